package image

import (
	"context"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
)

const (
	thumbWidth     = "width"
	thumbHeight    = "height"
	thumbMode      = "mode"
	thumbFilter    = "filter"
	thumbUpscale   = "upscale"
	thumbQuality   = "quality"
	thumbMaxPixels = "max_pixels"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.thumbnail",
		Summary: "Scale an image to a thumbnail: fit inside a box, fill it and crop, or stretch to an exact size.",
		Description: "Decodes the body once (EXIF orientation applied, pixel count checked before decoding) " +
			"and keeps the result for later image steps; the thumbnail is encoded once, in the source's format " +
			"(BMP, TIFF and WebP become PNG), when a later step writes the body.",
		Fields: []nodes.Field{
			{Name: thumbWidth, Kind: nodes.Int, Default: 256, Min: 1, Max: 65535, Doc: "Box width in pixels."},
			{Name: thumbHeight, Kind: nodes.Int, Default: 256, Min: 1, Max: 65535, Doc: "Box height in pixels."},
			{Name: thumbMode, Kind: nodes.Enum, Options: []string{"fit", "fill", "exact"}, Default: "fit", Doc: "fit: inside the box, aspect kept; fill: cover the box and crop the centre; exact: stretch to the box."},
			{Name: thumbFilter, Kind: nodes.Enum, Options: []string{"lanczos", "linear", "box"}, Default: "lanczos", Doc: "Resampling filter."},
			{Name: thumbUpscale, Kind: nodes.Bool, Default: false, Doc: "Enlarge images smaller than the box (fit mode)."},
			{Name: thumbQuality, Kind: nodes.Int, Default: 85, Min: 1, Max: 100, Doc: "JPEG quality of the written thumbnail."},
			{Name: thumbMaxPixels, Kind: nodes.Int, Default: DefaultMaxPixels, Min: 1, Max: 1 << 40, Doc: "Refuse larger images (width × height) without decoding them."},
		},
		Examples: []nodes.Example{{Title: "256 px thumbnail", YAML: "node: image.thumbnail\nwith:\n  width: 256\n  height: 256"}},
		New:      newThumbnail,
	})
}

type thumbnail struct {
	w, h    int
	mode    string
	filter  imaging.ResampleFilter
	upscale bool
	quality int
	lim     Limits
}

func newThumbnail(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	t := &thumbnail{
		w: c.Int(thumbWidth), h: c.Int(thumbHeight), mode: c.String(thumbMode),
		upscale: c.Bool(thumbUpscale), quality: c.Int(thumbQuality),
		lim: Limits{MaxPixels: int64(c.Int(thumbMaxPixels))},
	}
	switch c.String(thumbFilter) {
	case "linear":
		t.filter = imaging.Linear
	case "box":
		t.filter = imaging.Box
	default:
		t.filter = imaging.Lanczos
	}
	return t, nil
}

func (t *thumbnail) Process(ctx context.Context, env *nodes.Envelope) error {
	img, format, err := decoded(ctx, env, t.lim)
	if err != nil {
		return err
	}
	b := img.Bounds()
	out := img
	switch t.mode {
	case "fill":
		out = imaging.Fill(img, t.w, t.h, imaging.Center, t.filter)
	case "exact":
		out = imaging.Resize(img, t.w, t.h, t.filter)
	default:
		if t.upscale || b.Dx() > t.w || b.Dy() > t.h {
			out = imaging.Fit(img, t.w, t.h, t.filter)
			if t.upscale && b.Dx() <= t.w && b.Dy() <= t.h {
				// imaging.Fit never enlarges: scale up to the box by hand.
				rw, rh := float64(t.w)/float64(b.Dx()), float64(t.h)/float64(b.Dy())
				r := min(rw, rh)
				out = imaging.Resize(img, max(1, int(float64(b.Dx())*r+0.5)), max(1, int(float64(b.Dy())*r+0.5)), t.filter)
			}
		}
	}
	changed := out != img
	env.SetImage(out, format, t.quality, changed)
	ob := out.Bounds()
	env.SetResult(map[string]any{"width": ob.Dx(), "height": ob.Dy(), "format": format, "source_width": b.Dx(), "source_height": b.Dy()})
	return nil
}

var _ nodes.Node = (*thumbnail)(nil)
