package turbojpeg_test

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes/image/internal/turbojpeg"
)

func sample(t *testing.T, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 100, 255})
		}
	}
	var buf bytes.Buffer
	require.NoError(t, jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}))
	return buf.Bytes()
}

func TestDecodeScalesToTheSmallestSufficientFactor(t *testing.T) {
	if !turbojpeg.Available {
		_, err := turbojpeg.Decode(sample(t, 8, 8), 0, 0)
		assert.ErrorIs(t, err, turbojpeg.ErrUnavailable)
		return
	}
	body := sample(t, 800, 600)
	for _, tc := range []struct{ minW, minH, w, h int }{
		{0, 0, 100, 75},        // 1/8
		{100, 75, 100, 75},     // exactly 1/8
		{101, 10, 200, 150},    // 2/8
		{500, 10, 500, 375},    // 5/8
		{800, 600, 800, 600},   // full
		{5000, 5000, 800, 600}, // never enlarged
	} {
		img, err := turbojpeg.Decode(body, tc.minW, tc.minH)
		require.NoError(t, err)
		assert.Equal(t, image.Pt(tc.w, tc.h), img.Bounds().Size(), "min %dx%d", tc.minW, tc.minH)
		assert.True(t, img.Opaque())
	}
	img, err := turbojpeg.Decode(body, 800, 600)
	require.NoError(t, err)
	c := img.NRGBAAt(200, 100)
	assert.InDelta(t, 200, int(c.R), 6)
	assert.InDelta(t, 100, int(c.G), 6)

	out, err := turbojpeg.Encode(img, 80)
	require.NoError(t, err)
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(out))
	require.NoError(t, err)
	assert.Equal(t, [2]int{800, 600}, [2]int{cfg.Width, cfg.Height})
}

func TestDecodeDefersOnBrokenInput(t *testing.T) {
	if !turbojpeg.Available {
		t.Skip("built without libjpeg-turbo")
	}
	body := sample(t, 64, 64)
	for name, b := range map[string][]byte{"empty": nil, "truncated": body[:len(body)/2], "garbage": []byte("nope")} {
		_, err := turbojpeg.Decode(b, 0, 0)
		assert.True(t, errors.Is(err, turbojpeg.ErrUnsupported), "%s: %v", name, err)
	}
}
