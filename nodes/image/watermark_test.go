package image_test

import (
	"image"
	"image/color"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
	"github.com/sluicehq/sluice/storage"
)

// plain is a w×h mid-grey PNG.
func plain(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 128
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	return encodePNG(t, img)
}

// changed counts the pixels of region r that are no longer mid-grey.
func changed(img image.Image, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if !near(img.At(x, y), color.NRGBA{128, 128, 128, 255}, 2) {
				n++
			}
		}
	}
	return n
}

func TestWatermarkTextCorner(t *testing.T) {
	src := plain(t, 400, 300)
	img, env := run(t, "image.watermark", `{text: "© Sluice {{ payload?.n ?? 7 }}", opacity: 1, color: "#ffffff", size: 0.08}`, src)
	assert.Equal(t, image.Pt(400, 300), img.Bounds().Size())
	br := changed(img, image.Rect(200, 200, 400, 300))
	assert.Greater(t, br, 200, "text drawn in the bottom-right corner")
	assert.Zero(t, changed(img, image.Rect(0, 0, 200, 200)), "and nowhere else")
	assert.Zero(t, changed(img, image.Rect(392, 0, 400, 300)), "margin kept on the right")
	assert.Equal(t, "png", env.Steps["thumb"].(map[string]any)["format"])

	img, _ = run(t, "image.watermark", `{text: "x", position: top-left, opacity: 1}`, src)
	assert.Positive(t, changed(img, image.Rect(0, 0, 100, 100)))
	assert.Zero(t, changed(img, image.Rect(100, 100, 400, 300)))

	img, _ = run(t, "image.watermark", `{text: "DRAFT", tile: true, opacity: 0.3}`, src)
	for _, r := range []image.Rectangle{image.Rect(0, 0, 200, 150), image.Rect(200, 150, 400, 300)} {
		assert.Positive(t, changed(img, r), "tiled over %v", r)
	}
}

func TestWatermarkOverlay(t *testing.T) {
	logo := encodePNG(t, halves(40, 20, red, blue))
	file := filepath.Join(t.TempDir(), "logo.png")
	require.NoError(t, os.WriteFile(file, logo, 0o644))

	img, _ := run(t, "image.watermark", `{image: {file: `+file+`}, scale: 0.25, opacity: 1, position: top-right, margin: 0}`, plain(t, 400, 300))
	// 100 px wide, 50 tall, at the top-right corner.
	assert.True(t, near(img.At(310, 10), red, 10), "%v", img.At(310, 10))
	assert.True(t, near(img.At(390, 40), blue, 10))
	assert.Zero(t, changed(img, image.Rect(0, 60, 400, 300)))

	store := storage.NewStore(storage.NewMem())
	require.NoError(t, store.EnsureBucket(t.Context(), "assets"))
	_, err := store.PutBytes(t.Context(), "assets", "logo.png", logo, storage.PutOptions{})
	require.NoError(t, err)
	n := nodestest.New(t, "image.watermark", `{image: {bucket: assets, key: logo.png}, opacity: 0.5, position: center}`, nodes.Deps{Store: store})
	env := envOf(plain(t, 400, 300))
	require.NoError(t, n.Process(t.Context(), env))
	out, _, _ := env.Image()
	c := color.NRGBAModel.Convert(out.At(180, 150)).(color.NRGBA)
	assert.InDelta(t, (255+128)/2, int(c.R), 3, "half-opaque red over grey: %v", c)
}

func TestWatermarkConfigErrors(t *testing.T) {
	for _, with := range []string{
		`{}`,
		`{text: hi, image: {file: x.png}}`,
		`{text: hi, color: "#12"}`,
		`{text: hi, font_file: /nonexistent.ttf}`,
		`{image: {file: /nonexistent.png}}`,
		`{image: {bucket: a}}`,
	} {
		_, err := nodestest.Build("image.watermark", with, nodes.Deps{})
		assert.Error(t, err, with)
	}
}
