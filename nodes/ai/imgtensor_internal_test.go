package ai

import (
	"image"
	"image/color"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImageTensorLayouts: a 2×1 image (red, blue) in every layout and
// channel order.
func TestImageTensorLayouts(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	img.SetNRGBA(0, 0, color.NRGBA{255, 0, 0, 255})
	img.SetNRGBA(1, 0, color.NRGBA{0, 0, 255, 255})
	base := imageSpec{width: 2, height: 1, layout: "NCHW", channels: "rgb", fit: "stretch", scale: 1.0 / 255, mean: []float32{0}, std: []float32{1}}

	got := base.tensor(img, Float32)
	assert.Equal(t, []int64{1, 3, 1, 2}, got.Shape)
	assert.Equal(t, []float32{1, 0, 0, 0, 0, 1}, got.Data, "planes R, G, B")

	nhwc := base
	nhwc.layout = "NHWC"
	got = nhwc.tensor(img, Float32)
	assert.Equal(t, []int64{1, 1, 2, 3}, got.Shape)
	assert.Equal(t, []float32{1, 0, 0, 0, 0, 1}, got.Data, "pixels R G B, R G B")

	bgr := base
	bgr.channels = "bgr"
	bgr.mean, bgr.std = []float32{0.5, 0.5, 0.5}, []float32{0.5}
	got = bgr.tensor(img, Float32)
	assert.Equal(t, []float32{-1, 1, -1, -1, 1, -1}, got.Data, "planes B, G, R, normalized to [-1, 1]")

	gray := base
	gray.channels = "gray"
	got = gray.tensor(img, Uint8)
	assert.Equal(t, []int64{1, 1, 1, 2}, got.Shape)
	assert.Equal(t, []uint8{76, 29}, got.Data, "luma, raw bytes for a uint8 input")

	pad := base
	pad.width, pad.height, pad.fit = 4, 4, "pad"
	got = pad.tensor(img, Float32)
	require.Equal(t, []int64{1, 3, 4, 4}, got.Shape)
	r := got.Data.([]float32)[:16]
	assert.Positive(t, r[0], "the image, scaled to 4×2, at the top left")
	assert.Zero(t, r[12], "zeros below it")
}

func TestImageSpecResolve(t *testing.T) {
	s := imageSpec{layout: "NCHW", channels: "rgb"}
	require.NoError(t, s.resolve(Info{Name: "x", Type: Float32, Shape: []int64{1, 3, 224, 224}}))
	assert.Equal(t, 224, s.width, "the model's fixed size")
	s = imageSpec{layout: "NCHW", channels: "rgb"}
	assert.ErrorContains(t, s.resolve(Info{Name: "x", Type: Float32, Shape: []int64{-1, 3, -1, -1}}), "dynamic height: set image.height")
	s = imageSpec{layout: "NHWC", channels: "rgb", width: 10, height: 10}
	assert.ErrorContains(t, s.resolve(Info{Name: "x", Type: Float32, Shape: []int64{1, 10, 10, 1}}), "wants 1 channels")
	s = imageSpec{layout: "NCHW", channels: "rgb", width: 10, height: 10}
	assert.ErrorContains(t, s.resolve(Info{Name: "x", Type: Int64, Shape: []int64{1, 3, 10, 10}}), "images become float32 or uint8 tensors, not int64")
}
