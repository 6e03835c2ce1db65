package hostile_test

import (
	"bytes"
	"compress/zlib"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "golang.org/x/image/tiff"

	"github.com/sluicehq/sluice/internal/hostile"
)

// The files are what they claim, and small; small ones decode whole
// (the big ones decode the same way, only bigger).
func TestFilesDecode(t *testing.T) {
	for name, tc := range map[string]struct {
		gen    func(w, h int) []byte
		format string
		model  string
	}{
		"tiff": {hostile.TIFF, "tiff", "*image.RGBA64"},
		"png":  {hostile.PNG16, "png", "*image.NRGBA64"},
		"jpeg": {hostile.ProgressiveJPEG, "jpeg", "*image.YCbCr"},
	} {
		t.Run(name, func(t *testing.T) {
			big := tc.gen(10000, 10000)
			assert.Less(t, len(big), 1<<20, "a small file")
			cfg, format, err := image.DecodeConfig(bytes.NewReader(big))
			require.NoError(t, err)
			assert.Equal(t, tc.format, format)
			assert.Equal(t, [2]int{10000, 10000}, [2]int{cfg.Width, cfg.Height})

			img, _, err := image.Decode(bytes.NewReader(tc.gen(100, 60)))
			require.NoError(t, err)
			assert.Equal(t, image.Rect(0, 0, 100, 60), img.Bounds())
			assert.Contains(t, []string{tc.model, "*image.NRGBA64", "*image.RGBA64"}, typeName(img))
		})
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *image.RGBA64:
		return "*image.RGBA64"
	case *image.NRGBA64:
		return "*image.NRGBA64"
	case *image.YCbCr:
		return "*image.YCbCr"
	}
	return "other"
}

func TestZerosIsAValidZlibStream(t *testing.T) {
	for _, n := range []int64{1, 1000, 1 << 20, 3<<20 + 17} {
		zr, err := zlib.NewReader(bytes.NewReader(hostile.Zeros(n)))
		require.NoError(t, err)
		got, err := io.Copy(io.Discard, zr)
		require.NoError(t, err, "checksum and framing are right")
		assert.Equal(t, n, got)
	}
}
