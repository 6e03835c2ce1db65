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
	"github.com/dustin/go-humanize"
	"github.com/rwcarlsen/goexif/exif"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/image/internal/turbojpeg"
	"github.com/sluicehq/sluice/storage"
)

// Limits bound what is decoded: a hostile header cannot make Sluice
// allocate a huge image, nor a huge file be read into memory twice.
type Limits struct {
	MaxPixels int64
	MaxBytes  int64
	// MaxMemory bounds the estimated memory of one decode (see
	// DefaultMaxMemory).
	MaxMemory int64
}

const (
	// DefaultMaxPixels is 100 megapixels.
	DefaultMaxPixels = 100_000_000
	// DefaultMaxBytes is 64 MiB.
	DefaultMaxBytes = 64 << 20

	fieldMaxPixels = "max_pixels"
	fieldMaxBytes  = "max_bytes"
	fieldMaxMemory = "max_memory"
)

// limitFields are the decode limits every node that may decode accepts.
func limitFields() []nodes.Field {
	return []nodes.Field{
		{Name: fieldMaxPixels, Kind: nodes.Int, Default: DefaultMaxPixels, Min: 1, Max: 1 << 40, Doc: "Refuse larger images (width × height) without decoding them."},
		{Name: fieldMaxBytes, Kind: nodes.Int, Default: DefaultMaxBytes, Min: 1, Max: 1 << 40, Doc: "Refuse larger files without reading them whole."},
		{Name: fieldMaxMemory, Kind: nodes.Int, Default: DefaultMaxMemory, Min: 1 << 20, Max: 1 << 40, Doc: "Refuse images whose decoding is estimated, from their header, to take more memory (bytes per pixel of the decoded image × pixels, plus what the decoder keeps meanwhile). Decodes also share a process-wide budget, " + BudgetEnv + " (default 1 GiB): they wait while it is spent."},
	}
}

func limitsOf(c *nodes.Config) Limits {
	return Limits{MaxPixels: int64(c.Int(fieldMaxPixels)), MaxBytes: int64(c.Int(fieldMaxBytes)), MaxMemory: int64(c.Int(fieldMaxMemory))}
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
// done gives back the decoding memory the step holds: call it when the
// step ends.
type source struct {
	img  image.Image
	enc  nodes.ImageEncoder
	size image.Point
	done func()
}

func nop() {}

// decoded returns the envelope's image, decoding the body on first use,
// upright (EXIF orientation applied). Errors about the input are permanent
// and name it; running out of time waiting for decoding memory is not.
//
// The decoding memory (its estimate) is held from the process-wide budget
// until the step calls done: the step's own full-size copy is counted in
// it. A decoded image kept for later steps is not counted any more.
func decoded(ctx context.Context, env *nodes.Envelope, lim Limits, hint sizeHint) (source, error) {
	if img, enc, ok := env.Image(); ok {
		return source{img, enc, img.Bounds().Size(), nop}, nil
	}
	body, err := env.BodyWithin(ctx, lim.MaxBytes)
	if err != nil {
		if errors.Is(err, storage.ErrTooLarge) {
			return source{}, nodes.Permanent(fmt.Errorf("%w: refused before reading it whole (max_bytes)", err))
		}
		return source{}, err
	}
	img, format, size, turned, res, err := decode(ctx, body, lim, hint)
	if err != nil {
		if errors.Is(err, errWait) {
			return source{}, fmt.Errorf("%s: %w", sourceName(env), err)
		}
		return source{}, nodes.Permanent(fmt.Errorf("%s: %w", sourceName(env), err))
	}
	enc := defaultEncoder(format)
	// Pixels decoded scaled down, or turned upright, no longer match the
	// body: it must be re-encoded even if no step changes them further.
	env.SetImage(img, enc, img.Bounds().Size() != size || turned)
	return source{img, enc, size, res.done}, nil
}

func sourceName(env *nodes.Envelope) string {
	if env.Object != nil {
		return env.Object.Bucket + "/" + env.Object.Key
	}
	return "message body"
}

// decode checks body against the limits from its header alone, reserves
// the decode's estimated memory from the budget, then decodes it upright.
//
// size is the upright source's size; turned says EXIF orientation moved
// the pixels; res holds the reserved memory, given back by res.done.
func decode(ctx context.Context, body []byte, lim Limits, hint sizeHint) (img image.Image, format string, size image.Point, turned bool, res *reservation, err error) {
	fail := func(err error) (image.Image, string, image.Point, bool, *reservation, error) {
		return nil, "", image.Point{}, false, nil, err
	}
	if len(body) == 0 {
		return fail(fmt.Errorf("empty file: %w", ErrNotImage))
	}
	if lim.MaxBytes > 0 && int64(len(body)) > lim.MaxBytes {
		return fail(fmt.Errorf("%d bytes, over the limit of %d: refused before decoding", len(body), lim.MaxBytes))
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		return fail(fmt.Errorf("%w (%v)", ErrNotImage, err))
	}
	if px := int64(cfg.Width) * int64(cfg.Height); cfg.Width <= 0 || cfg.Height <= 0 || px > lim.MaxPixels {
		return fail(fmt.Errorf("%s of %d×%d pixels, over the limit of %d: refused before decoding", format, cfg.Width, cfg.Height, lim.MaxPixels))
	}
	what := fmt.Sprintf("%s of %d×%d pixels", format, cfg.Width, cfg.Height)
	// hold checks an estimate against the per-image limit and takes it
	// from the budget.
	res = &reservation{}
	done := res.done
	hold := func(n int64) error {
		if lim.MaxMemory > 0 && n > lim.MaxMemory {
			return fmt.Errorf("%s needs about %s to decode, over the limit of %s (max_memory): refused before decoding", what, humanize.IBytes(uint64(n)), humanize.IBytes(uint64(lim.MaxMemory)))
		}
		release, err := reserve(ctx, n, what)
		if err != nil {
			return err
		}
		res.n += n
		res.releases = append(res.releases, release)
		return nil
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
		sw, sh := turbojpeg.ScaledSize(cfg.Width, cfg.Height, minW, minH)
		if err := hold(turboEstimate(body, cfg, sw, sh, orient > 1)); err != nil {
			return fail(err)
		}
		img, err := turbojpeg.Decode(body, minW, minH)
		if err == nil {
			return orient1(img, orient), format, size, orient > 1, res, nil
		}
		if !errors.Is(err, turbojpeg.ErrUnsupported) {
			done()
			return fail(fmt.Errorf("cannot decode jpeg: %w", err))
		}
		// Not for libjpeg-turbo (CMYK, a recoverable defect such as a
		// truncated file): the Go decoder judges, at full size. Its
		// estimate is held instead of libjpeg-turbo's, not beside it: two
		// decodes each holding one while waiting for the other could
		// wait for each other.
		done()
		res.n = 0
	}
	if err := hold(goEstimate(body, format, cfg)); err != nil {
		done()
		return fail(err)
	}
	img, err = imaging.Decode(bytes.NewReader(body), imaging.AutoOrientation(true))
	if err != nil {
		done()
		return fail(fmt.Errorf("cannot decode %s: %w", format, err))
	}
	return img, format, img.Bounds().Size(), orient > 1, res, nil
}

// reservation is the decoding memory a decode holds from the budget.
type reservation struct {
	n        int64 // bytes, the sum of the estimates held
	releases []func()
}

// done gives the memory back; it may be called more than once.
func (r *reservation) done() {
	for _, f := range r.releases {
		f()
	}
	r.releases = nil
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
