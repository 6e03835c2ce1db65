// Package image holds the image nodes. Consecutive image steps share one
// decoded image kept on the envelope, so a message's image is decoded
// once, and encoded once, when a later step writes the body.
package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // formats image.Decode knows
	_ "image/jpeg"
	_ "image/png"

	"github.com/disintegration/imaging"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"

	"github.com/sluicehq/sluice/nodes"
)

// Limits bound what is decoded: a hostile header cannot make Sluice
// allocate a huge image.
type Limits struct {
	MaxPixels int64
}

// DefaultMaxPixels is 100 megapixels.
const DefaultMaxPixels = 100_000_000

// ErrNotImage is wrapped by errors for bodies that are not a supported image.
var ErrNotImage = errors.New("not a supported image")

// decoded returns the envelope's image, decoding the body on first use
// with EXIF orientation applied. Errors about the input are permanent and
// name the object.
func decoded(ctx context.Context, env *nodes.Envelope, lim Limits) (image.Image, string, error) {
	if img, format, ok := env.Image(); ok {
		return img, format, nil
	}
	body, err := env.Body(ctx)
	if err != nil {
		return nil, "", err
	}
	name := "message body"
	if env.Object != nil {
		name = env.Object.Bucket + "/" + env.Object.Key
	}
	if len(body) == 0 {
		return nil, "", nodes.Permanent(fmt.Errorf("%s is empty: %w", name, ErrNotImage))
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		return nil, "", nodes.Permanent(fmt.Errorf("%s: %w (%v)", name, ErrNotImage, err))
	}
	if px := int64(cfg.Width) * int64(cfg.Height); cfg.Width <= 0 || cfg.Height <= 0 || px > lim.MaxPixels {
		return nil, "", nodes.Permanent(fmt.Errorf("%s is %d×%d pixels, over the limit of %d: refused before decoding", name, cfg.Width, cfg.Height, lim.MaxPixels))
	}
	img, err := imaging.Decode(bytes.NewReader(body), imaging.AutoOrientation(true))
	if err != nil {
		return nil, "", nodes.Permanent(fmt.Errorf("%s: cannot decode %s: %w", name, format, err))
	}
	out := format
	switch format {
	case "jpeg", "png", "gif":
	default:
		out = "png" // bmp, tiff, webp are written back as PNG
	}
	env.SetImage(img, out, 0, false)
	return img, out, nil
}
