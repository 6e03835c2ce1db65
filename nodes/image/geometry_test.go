package image_test

import (
	"bytes"
	"image"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// run builds a node from YAML and runs it on body; it returns the decoded
// output.
func run(t *testing.T, typ, with string, body []byte) (image.Image, *nodes.Envelope) {
	t.Helper()
	env := envOf(body)
	require.NoError(t, nodestest.New(t, typ, with, nodes.Deps{}).Process(t.Context(), env))
	out, err := env.Body(t.Context())
	require.NoError(t, err)
	img, _, err := image.Decode(bytes.NewReader(out))
	require.NoError(t, err)
	return img, env
}

func TestExifOrientationIsApplied(t *testing.T) {
	// Stored 200×100, red left, blue right; orientation 6 means "turn 90°
	// clockwise to display": upright it is 100×200, red on top.
	body := withOrientation(jpegOf(t, halves(200, 100, red, blue)), 6)
	for _, with := range []string{`{width: 50, height: 100}`, `{width: 1000, height: 1000}`} {
		img, env := run(t, "image.thumbnail", with, body)
		b := img.Bounds()
		assert.Equal(t, b.Dx()*2, b.Dy(), "portrait after orientation: %v", b)
		assert.True(t, near(img.At(b.Dx()/2, b.Dy()/8), red, 40), "top is the stored left half: %v", img.At(b.Dx()/2, b.Dy()/8))
		assert.True(t, near(img.At(b.Dx()/2, b.Dy()*7/8), blue, 40))
		res := env.Steps["thumb"].(map[string]any)
		assert.Equal(t, []any{100, 200}, []any{res["source_width"], res["source_height"]})
	}
	img, _ := run(t, "image.resize", `{width: 100}`, withOrientation(jpegOf(t, halves(200, 100, red, blue)), 3))
	assert.True(t, near(img.At(10, 25), blue, 40), "orientation 3 is a half turn: blue on the left")
}

func TestResizeFitCropRotate(t *testing.T) {
	src := pngOf(t, 400, 200)
	for _, tc := range []struct {
		typ, with string
		w, h      int
	}{
		{"image.resize", `{width: 100}`, 100, 50},
		{"image.resize", `{height: 100}`, 200, 100},
		{"image.resize", `{width: 800, height: 100, filter: linear}`, 800, 100},
		{"image.fit", `{width: 100, height: 100}`, 100, 50},
		{"image.fit", `{width: 1000, height: 1000}`, 400, 200},
		{"image.fit", `{width: 1000, height: 1000, upscale: true}`, 1000, 500},
		{"image.crop", `{x: 10, y: 20, width: 100, height: 50}`, 100, 50},
		{"image.crop", `{x: 350, y: 150, width: 100, height: 100}`, 50, 50}, // clipped
		{"image.crop", `{width: 100, height: 100, anchor: top-left}`, 100, 100},
		{"image.crop", `{ratio: "1:1"}`, 200, 200},
		{"image.crop", `{ratio: "4:1"}`, 400, 100},
		{"image.rotate", `{angle: 90}`, 200, 400},
		{"image.rotate", `{angle: 180, flip: horizontal}`, 400, 200},
		{"image.thumbnail", `{width: 100, height: 100, mode: fill, anchor: left}`, 100, 100},
	} {
		t.Run(tc.typ+tc.with, func(t *testing.T) {
			img, env := run(t, tc.typ, tc.with, src)
			assert.Equal(t, image.Pt(tc.w, tc.h), img.Bounds().Size())
			res := env.Steps["thumb"].(map[string]any)
			assert.Equal(t, []any{tc.w, tc.h, "png"}, []any{res["width"], res["height"], res["format"]})
		})
	}
}

func TestCropAndRotatePixels(t *testing.T) {
	src := pngOf(t, 400, 200) // pixel (x, y) is {x, y, 0}
	img, _ := run(t, "image.crop", `{x: 10, y: 20, width: 100, height: 50}`, src)
	assert.True(t, near(img.At(0, 0), pixel(10, 20), 0), "%v", img.At(0, 0))

	// A quarter turn clockwise puts the old bottom-left corner top-left.
	img, _ = run(t, "image.rotate", `{angle: 90}`, src)
	assert.True(t, near(img.At(0, 0), pixel(0, 199), 0), "%v", img.At(0, 0))
	img, _ = run(t, "image.rotate", `{flip: vertical}`, src)
	assert.True(t, near(img.At(5, 0), pixel(5, 199), 0))
}

func TestGeometryConfigErrors(t *testing.T) {
	for typ, with := range map[string]string{
		"image.resize": `{filter: lanczos}`,
		"image.crop":   `{ratio: "16:9", width: 10}`,
		"image.rotate": `{}`,
	} {
		_, err := nodestest.Build(typ, with, nodes.Deps{})
		assert.Error(t, err, typ)
	}
	_, err := nodestest.Build("image.crop", `{ratio: "wide", x: 1, anchor: top}`, nodes.Deps{})
	require.Error(t, err)
	assert.Len(t, nodestest.Problems(t, err), 3, "every problem at once: %v", err)

	env := envOf(pngOf(t, 40, 40))
	err = nodestest.New(t, "image.crop", `{x: 100, y: 100, width: 10, height: 10}`, nodes.Deps{}).Process(t.Context(), env)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "lies outside the 40×40 image")
}
