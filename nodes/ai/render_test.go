package ai_test

import (
	"bytes"
	"image"
	"image/png"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/ocrtest"
)

// render draws lines of text (see ocrtest.Render).
func render(t testing.TB, ttf []byte, px float64, lines ...string) *image.NRGBA {
	t.Helper()
	img, err := ocrtest.Render(ttf, px, lines...)
	require.NoError(t, err)
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
