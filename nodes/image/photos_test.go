package image

import (
	"bytes"
	"image"
	"math"
	"os"
	"testing"

	"github.com/disintegration/imaging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/phototest"
	"github.com/sluicehq/sluice/nodes/image/internal/turbojpeg"
)

// psnr compares two same-sized images over RGB, in dB.
func psnr(a, b image.Image) float64 {
	na, nb := imaging.Clone(a), imaging.Clone(b)
	var sum float64
	for i := range na.Pix {
		if i%4 == 3 {
			continue
		}
		d := float64(na.Pix[i]) - float64(nb.Pix[i])
		sum += d * d
	}
	mse := sum / float64(len(na.Pix)/4*3)
	if mse == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/mse)
}

// TestScaledDecodeMatchesFullDecode checks, on real photographs, that the
// fast path (libjpeg-turbo decoding at a reduced scale, then Lanczos)
// gives the same thumbnail as decoding every pixel in pure Go.
func TestScaledDecodeMatchesFullDecode(t *testing.T) {
	if !turbojpeg.Available {
		t.Skip("built without libjpeg-turbo")
	}
	photos := phototest.Photos(t)
	checked := 0
	for _, p := range photos {
		body, err := os.ReadFile(p)
		require.NoError(t, err)
		cfg, _, err := image.DecodeConfig(bytes.NewReader(body))
		require.NoError(t, err)
		if cfg.Width*cfg.Height > 6_000_000 && checked > 0 {
			continue // the pure-Go reference is slow under -race: a sample is enough
		}
		hint := func(w, h int) (int, int) { return fitSize(w, h, 256, 256, false) }
		fast, _, size, _, res, err := decode(t.Context(), body, Limits{MaxPixels: DefaultMaxPixels}, hint)
		require.NoError(t, err, p)
		res.done()
		assert.Less(t, fast.Bounds().Dx(), cfg.Width, "decoded scaled: %s", p)
		full, err := imaging.Decode(bytes.NewReader(body), imaging.AutoOrientation(true))
		require.NoError(t, err)
		assert.Equal(t, full.Bounds().Size(), size, "source size reported")
		w, h := fitSize(size.X, size.Y, 256, 256, false)
		a, b := imaging.Resize(fast, w, h, imaging.Lanczos), imaging.Resize(full, w, h, imaging.Lanczos)
		q := psnr(a, b)
		t.Logf("%s: %dx%d, decoded at %v, PSNR %.1f dB", p, cfg.Width, cfg.Height, fast.Bounds().Size(), q)
		assert.Greater(t, q, 38.0, "visually equivalent: %s", p)
		if checked++; checked == 4 {
			break
		}
	}
}
