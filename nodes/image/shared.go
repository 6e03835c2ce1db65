package image

import (
	"context"
	"image"

	"github.com/sluicehq/sluice/nodes"
)

// Decoded gives nodes of other packages (ai.onnx, ai.ocr) the image an
// earlier image step kept on the envelope, or decodes the body now, once,
// within lim (errors about the input are permanent and name it) and keeps
// it for later steps. hint, when not nil, gives the smallest size the
// caller needs for an upright w×h source, letting a JPEG decode scaled down
// (to at least twice the hint). size is the upright source's size; the
// pixels may be smaller. The image must not be changed.
func Decoded(ctx context.Context, env *nodes.Envelope, lim Limits, hint func(w, h int) (minW, minH int)) (img image.Image, size image.Point, err error) {
	src, err := decoded(ctx, env, lim, hint)
	if err != nil {
		return nil, image.Point{}, err
	}
	return src.img, src.size, nil
}
