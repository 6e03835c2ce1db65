package image_test

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/phototest"
	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/image"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, pixel(x, y))
		}
	}
	return encodePNG(t, img)
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

// pixel is pngOf's colour at x, y.
func pixel(x, y int) color.NRGBA { return color.NRGBA{uint8(x), uint8(y), 0, 255} }

func envOf(body []byte) *nodes.Envelope {
	env := nodestest.Envelope(nil, 0, "thumb")
	env.SetBody(body, "")
	return env
}

func size(t *testing.T, env *nodes.Envelope) (int, int, string) {
	t.Helper()
	body, err := env.Body(t.Context())
	require.NoError(t, err)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	require.NoError(t, err)
	return cfg.Width, cfg.Height, format
}

func TestThumbnailModes(t *testing.T) {
	src := pngOf(t, 400, 200)
	for _, tc := range []struct {
		with string
		w, h int
	}{
		{`{width: 100, height: 100}`, 100, 50},
		{`{width: 100, height: 100, mode: fill}`, 100, 100},
		{`{width: 120, height: 30, mode: exact, filter: box}`, 120, 30},
		{`{width: 1000, height: 1000}`, 400, 200},              // never enlarged by default
		{`{width: 800, height: 800, upscale: true}`, 800, 400}, // unless asked
	} {
		t.Run(tc.with, func(t *testing.T) {
			env := envOf(src)
			require.NoError(t, nodestest.New(t, "image.thumbnail", tc.with, nodes.Deps{}).Process(t.Context(), env))
			w, h, format := size(t, env)
			assert.Equal(t, [2]int{tc.w, tc.h}, [2]int{w, h})
			assert.Equal(t, "png", format, "written in the source's format")
			assert.EqualValues(t, tc.w, env.Steps["thumb"].(map[string]any)["width"])
		})
	}
}

func TestConsecutiveImageStepsDecodeOnce(t *testing.T) {
	env := envOf(pngOf(t, 300, 300))
	big := nodestest.New(t, "image.thumbnail", `{width: 200, height: 200}`, nodes.Deps{})
	small := nodestest.New(t, "image.thumbnail", `{width: 50, height: 50}`, nodes.Deps{})
	require.NoError(t, big.Process(t.Context(), env))
	env.SetBody([]byte("the decoded image must be reused, not this body"), "")
	// SetBody drops the image: decoding again now fails, proving the
	// second step below would otherwise reuse the kept image.
	err := small.Process(t.Context(), env)
	require.Error(t, err)

	env = envOf(pngOf(t, 300, 300))
	require.NoError(t, big.Process(t.Context(), env))
	img1, _, ok := env.Image()
	require.True(t, ok)
	require.NoError(t, small.Process(t.Context(), env))
	img2, _, _ := env.Image()
	assert.NotSame(t, img1, img2)
	w, h, _ := size(t, env)
	assert.Equal(t, [2]int{50, 50}, [2]int{w, h})
}

func TestJPEGQualityAndFormat(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	var buf bytes.Buffer
	require.NoError(t, jpeg.Encode(&buf, img, nil))
	env := envOf(buf.Bytes())
	require.NoError(t, nodestest.New(t, "image.thumbnail", `{width: 64, height: 64, quality: 50}`, nodes.Deps{}).Process(t.Context(), env))
	w, h, format := size(t, env)
	assert.Equal(t, "jpeg", format)
	assert.Equal(t, [2]int{64, 48}, [2]int{w, h})
	assert.Equal(t, "image/jpeg", env.BodyType())
}

func TestHostileAndBrokenInputsArePermanentErrors(t *testing.T) {
	n := nodestest.New(t, "image.thumbnail", `{}`, nodes.Deps{})
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	err := n.Process(t.Context(), envOf(phototest.HugePNG(50000, 50000)))
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.Contains(t, err.Error(), "50000×50000 pixels, over the limit of 100000000")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "refused without allocating the image")

	limited := nodestest.New(t, "image.thumbnail", `{max_pixels: 1000}`, nodes.Deps{})
	assert.ErrorContains(t, limited.Process(t.Context(), envOf(pngOf(t, 40, 40))), "over the limit of 1000")

	good := pngOf(t, 64, 64)
	for name, body := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello, not an image"),
		"truncated": good[:len(good)/2],
	} {
		t.Run(name, func(t *testing.T) {
			err := n.Process(t.Context(), envOf(body))
			require.Error(t, err)
			assert.True(t, nodes.IsPermanent(err), "%v", err)
		})
	}
}
