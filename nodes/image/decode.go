// Package image holds the image nodes. Consecutive image steps share one
// decoded image kept on the envelope, so a message's image is decoded
// once, and encoded once, when a later step reads the body.
//
// JPEGs are decoded with libjpeg-turbo when it is built in (cgo), scaled
// in the DCT domain when the first image step only needs a smaller image
// (a thumbnail of a 12 MP photo decodes at 1/8 scale, several times
// faster); everything else, and every build with the purego tag, uses the
// pure-Go decoders.
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
	"github.com/rwcarlsen/goexif/exif"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/image/internal/turbojpeg"
)

// Limits bound what is decoded: a hostile header cannot make Sluice
// allocate a huge image, nor a huge file be read into memory twice.
type Limits struct {
	MaxPixels int64
	MaxBytes  int64
}

const (
	// DefaultMaxPixels is 100 megapixels.
	DefaultMaxPixels = 100_000_000
	// DefaultMaxBytes is 64 MiB.
	DefaultMaxBytes = 64 << 20

	fieldMaxPixels = "max_pixels"
	fieldMaxBytes  = "max_bytes"
)

// limitFields are the decode limits every node that may decode accepts.
func limitFields() []nodes.Field {
	return []nodes.Field{
		{Name: fieldMaxPixels, Kind: nodes.Int, Default: DefaultMaxPixels, Min: 1, Max: 1 << 40, Doc: "Refuse larger images (width × height) without decoding them."},
		{Name: fieldMaxBytes, Kind: nodes.Int, Default: DefaultMaxBytes, Min: 1, Max: 1 << 40, Doc: "Refuse larger files without decoding them."},
	}
}

func limitsOf(c *nodes.Config) Limits {
	return Limits{MaxPixels: int64(c.Int(fieldMaxPixels)), MaxBytes: int64(c.Int(fieldMaxBytes))}
}

// ErrNotImage is wrapped by errors for bodies that are not a supported image.
var ErrNotImage = errors.New("not a supported image")

// sizeHint gives the size the first image step will scale the image to,
// given the upright source size, so the decoder may decode smaller (with
// a margin for quality). nil means the step needs every pixel.
type sizeHint func(w, h int) (minW, minH int)

// source is an image ready for a step: the pixels, the encoder that will
// write them, and the size they stand for. Size is the upright source's
// size: the pixels may be smaller, when a size hint let the decoder scale.
type source struct {
	img  image.Image
	enc  nodes.ImageEncoder
	size image.Point
}

// decoded returns the envelope's image, decoding the body on first use,
// upright (EXIF orientation applied). Errors about the input are permanent
// and name it.
func decoded(ctx context.Context, env *nodes.Envelope, lim Limits, hint sizeHint) (source, error) {
	if img, enc, ok := env.Image(); ok {
		return source{img, enc, img.Bounds().Size()}, nil
	}
	body, err := env.Body(ctx)
	if err != nil {
		return source{}, err
	}
	img, format, size, turned, err := decode(body, lim, hint)
	if err != nil {
		return source{}, nodes.Permanent(fmt.Errorf("%s: %w", sourceName(env), err))
	}
	enc := defaultEncoder(format)
	// Pixels decoded scaled down, or turned upright, no longer match the
	// body: it must be re-encoded even if no step changes them further.
	env.SetImage(img, enc, img.Bounds().Size() != size || turned)
	return source{img, enc, size}, nil
}

func sourceName(env *nodes.Envelope) string {
	if env.Object != nil {
		return env.Object.Bucket + "/" + env.Object.Key
	}
	return "message body"
}

// decode checks body against the limits from its header alone, then
// decodes it upright.
//
// size is the upright source's size; turned says EXIF orientation moved
// the pixels.
func decode(body []byte, lim Limits, hint sizeHint) (img image.Image, format string, size image.Point, turned bool, err error) {
	if len(body) == 0 {
		return nil, "", size, false, fmt.Errorf("empty file: %w", ErrNotImage)
	}
	if lim.MaxBytes > 0 && int64(len(body)) > lim.MaxBytes {
		return nil, "", size, false, fmt.Errorf("%d bytes, over the limit of %d: refused before decoding", len(body), lim.MaxBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		return nil, "", size, false, fmt.Errorf("%w (%v)", ErrNotImage, err)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); cfg.Width <= 0 || cfg.Height <= 0 || px > lim.MaxPixels {
		return nil, "", size, false, fmt.Errorf("%s of %d×%d pixels, over the limit of %d: refused before decoding", format, cfg.Width, cfg.Height, lim.MaxPixels)
	}
	orient := 1
	if format == "jpeg" {
		orient = orientation(body)
	}
	w, h := cfg.Width, cfg.Height
	if orient >= 5 { // stored sideways
		w, h = h, w
	}
	size = image.Pt(w, h)
	if format == "jpeg" && turbojpeg.Available {
		minW, minH := w, h
		if hint != nil {
			// Twice the target, as libvips does, leaves the resampling
			// filter room: thumbnails then match a full decode's within
			// ~40 dB PSNR, where decoding just to the target size loses
			// fine texture (~33 dB on some photos).
			tw, th := hint(w, h)
			minW, minH = min(w, 2*tw), min(h, 2*th)
		}
		if orient >= 5 {
			minW, minH = minH, minW
		}
		img, err := turbojpeg.Decode(body, minW, minH)
		if err == nil {
			return orient1(img, orient), format, size, orient > 1, nil
		}
		if !errors.Is(err, turbojpeg.ErrUnsupported) {
			return nil, "", size, false, fmt.Errorf("cannot decode jpeg: %w", err)
		}
		// Not for libjpeg-turbo (CMYK, a recoverable defect such as a
		// truncated file): the Go decoder judges.
	}
	img, err = imaging.Decode(bytes.NewReader(body), imaging.AutoOrientation(true))
	if err != nil {
		return nil, "", size, false, fmt.Errorf("cannot decode %s: %w", format, err)
	}
	return img, format, img.Bounds().Size(), orient > 1, nil
}

// orientation reads a JPEG's EXIF orientation (1-8; 1 when absent or
// unreadable). EXIF parsers have a history of panics on hostile input:
// one here counts as no orientation.
func orientation(body []byte) (o int) {
	defer func() {
		if recover() != nil {
			o = 1
		}
	}()
	x, err := exif.Decode(bytes.NewReader(body))
	if err != nil {
		return 1
	}
	tag, err := x.Get(exif.Orientation)
	if err != nil || tag.Count < 1 {
		return 1
	}
	v, err := tag.Int(0)
	if err != nil || v < 1 || v > 8 {
		return 1
	}
	return v
}

// orient1 turns an image stored with EXIF orientation o upright.
func orient1(img *image.NRGBA, o int) *image.NRGBA {
	switch o {
	case 2:
		return imaging.FlipH(img)
	case 3:
		return imaging.Rotate180(img)
	case 4:
		return imaging.FlipV(img)
	case 5:
		return imaging.Transpose(img)
	case 6:
		return imaging.Rotate270(img)
	case 7:
		return imaging.Transverse(img)
	case 8:
		return imaging.Rotate90(img)
	}
	return img
}
