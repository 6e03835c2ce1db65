package ai

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMinAreaRectOfATiltedBox(t *testing.T) {
	// A 100×20 box turned by 10°, around (200, 100).
	a := 10 * math.Pi / 180
	u, v := pt{math.Cos(a), math.Sin(a)}, pt{-math.Sin(a), math.Cos(a)}
	c := pt{200, 100}
	want := rect{c: c, u: u, v: v, w: 100, h: 20}
	cs := want.corners()
	ps := append(cs[:], c, c.add(u.mul(10))) // inner points do not matter
	got := minAreaRect(convexHull(ps))
	assert.InDelta(t, 100, got.w, 1e-6)
	assert.InDelta(t, 20, got.h, 1e-6)
	assert.InDelta(t, c.x, got.c.x, 1e-6)
	assert.InDelta(t, c.y, got.c.y, 1e-6)
	assert.InDelta(t, 1, got.u.dot(u), 1e-9, "u along the text, pointing right")
	assert.Positive(t, got.v.y, "v points down")
}

func TestUnclipGrowsEverySide(t *testing.T) {
	r := unclip(rect{w: 100, h: 20, u: pt{1, 0}, v: pt{0, 1}}, 1.5)
	d := 100 * 20 * 1.5 / 240
	assert.InDelta(t, 100+2*d, r.w, 1e-9)
	assert.InDelta(t, 20+2*d, r.h, 1e-9)
}

func TestMergeRows(t *testing.T) {
	h := pt{1, 0}
	v := pt{0, 1}
	word := func(x, y, w float64) rect { return rect{c: pt{x + w/2, y}, u: h, v: v, w: w, h: 20} }
	rs := mergeRows([]rect{word(0, 50, 60), word(70, 51, 40), word(400, 50, 50), word(0, 100, 80)}, 0.6)
	assert.Len(t, rs, 3, "the first two words join; a far column and the next row stay apart")
	assert.InDelta(t, 110, rs[0].w, 1.5)
}

func TestCTCDecode(t *testing.T) {
	dict := []string{"a", "b", " "} // classes: blank, a, b, space
	step := func(cls int, spaceP float32) []float32 {
		row := make([]float32, 4)
		row[cls] = 0.9
		if spaceP > 0 {
			row[3] = spaceP
		}
		return row
	}
	var p []float32
	for _, s := range [][]float32{step(1, 0), step(1, 0), step(0, 0), step(1, 0), step(0, 0.05), step(2, 0), step(0, 0.001), step(2, 0)} {
		p = append(p, s...)
	}
	text, conf := ctcDecode(p, 8, 4, dict, 3)
	assert.Equal(t, "aa bb", text, "repeats merged, blanks split them, a likely space written")
	assert.InDelta(t, 0.9, conf, 1e-6)
	text, _ = ctcDecode(p, 8, 4, dict, -1)
	assert.Equal(t, "aabb", text, "no space class, no spaces")
	assert.Equal(t, "Hi! (a:b)", mapWidth("Ｈｉ！\u3000（a：b）"))
}

func mapWidth(s string) string {
	out := []rune{}
	for _, r := range s {
		out = append(out, halfWidth(r))
	}
	return string(out)
}
