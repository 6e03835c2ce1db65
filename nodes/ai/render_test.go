package ai_test

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// render draws lines of dark text on a light background with a TrueType
// font at px pixels, with a margin.
func render(t testing.TB, ttf []byte, px float64, lines ...string) *image.NRGBA {
	t.Helper()
	f, err := opentype.Parse(ttf)
	require.NoError(t, err)
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: px, DPI: 72, Hinting: font.HintingFull})
	require.NoError(t, err)
	defer face.Close()
	m := face.Metrics()
	lineH := (m.Height * 3 / 2).Ceil()
	w := 0
	for _, l := range lines {
		w = max(w, font.MeasureString(face, l).Ceil())
	}
	margin := int(px)
	img := image.NewNRGBA(image.Rect(0, 0, w+2*margin, len(lines)*lineH+2*margin))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.NRGBA{250, 250, 245, 255}), image.Point{}, draw.Src)
	d := font.Drawer{Dst: img, Src: image.NewUniform(color.NRGBA{20, 20, 30, 255}), Face: face}
	for i, l := range lines {
		d.Dot = fixed.P(margin, margin+i*lineH+m.Ascent.Ceil())
		d.DrawString(l)
	}
	return img
}

func pngBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

// tight crops img to its dark pixels and a margin of pad pixels, as a
// text detector's box would.
func tight(img *image.NRGBA, pad int) *image.NRGBA {
	b := img.Bounds()
	r := image.Rectangle{Min: b.Max, Max: b.Min}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if img.NRGBAAt(x, y).R < 128 {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return img.SubImage(r.Inset(-pad).Intersect(b)).(*image.NRGBA)
}
