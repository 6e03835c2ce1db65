package image

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/image/internal/turbojpeg"
)

// Formats the image nodes write.
var writeFormats = []string{"jpeg", "png", "gif"}

// encoder writes a kept image in one format. Go's encoders write no
// metadata: EXIF (GPS included) and other segments of the source are
// dropped, and orientation has already been applied to the pixels.
type encoder struct {
	format    string // "jpeg", "png", "gif"
	quality   int    // JPEG 1-100
	pngLevel  png.CompressionLevel
	gifColors int // 1-256
}

var _ nodes.ImageEncoder = encoder{}

// defaultEncoder writes a decoded source back in its own format (BMP, TIFF
// and WebP, which Sluice reads but does not write, become PNG).
func defaultEncoder(sourceFormat string) encoder {
	switch sourceFormat {
	case "jpeg", "gif":
		return encoder{format: sourceFormat, quality: 85, gifColors: 256}
	}
	return encoder{format: "png", quality: 85, gifColors: 256}
}

// withQuality returns enc with a JPEG quality, when q is set.
func withQuality(enc nodes.ImageEncoder, q int) nodes.ImageEncoder {
	if e, ok := enc.(encoder); ok && q > 0 {
		e.quality = q
		return e
	}
	return enc
}

func (e encoder) Format() string { return e.format }

func (e encoder) Encode(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	switch e.format {
	case "jpeg":
		q := e.quality
		if q <= 0 {
			q = 85
		}
		if !opaque(img) {
			img = flatten(img)
		}
		if n, ok := img.(*image.NRGBA); ok && turbojpeg.Available {
			return turbojpeg.Encode(n, q)
		}
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
			return nil, err
		}
	case "png":
		enc := png.Encoder{CompressionLevel: e.pngLevel}
		if err := enc.Encode(&buf, img); err != nil {
			return nil, err
		}
	case "gif":
		n := e.gifColors
		if n <= 0 || n > 256 {
			n = 256
		}
		if err := gif.Encode(&buf, img, &gif.Options{NumColors: n}); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("cannot write images as %q", e.format)
	}
	return buf.Bytes(), nil
}

func opaque(img image.Image) bool {
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return o.Opaque()
	}
	return false
}

// flatten composes img over white: JPEG has no transparency, and a
// transparent background should not come out black.
func flatten(img image.Image) *image.NRGBA {
	b := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(out, out.Bounds(), img, b.Min, draw.Over)
	return out
}
