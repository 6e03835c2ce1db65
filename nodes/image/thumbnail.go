package image

import (
	"context"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
)

const (
	thumbWidth   = "width"
	thumbHeight  = "height"
	thumbMode    = "mode"
	thumbAnchor  = "anchor"
	thumbUpscale = "upscale"
	thumbQuality = "quality"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.thumbnail",
		Summary: "Scale an image to a thumbnail: fit inside a box, fill it and crop, or stretch to an exact size.",
		Description: "Decodes the body once (EXIF orientation applied, size checked before decoding; JPEGs " +
			"decoded scaled down in the DCT domain when that is enough for the thumbnail) and keeps the result " +
			"for later image steps; the thumbnail is encoded once, in the source's format (BMP, TIFF and WebP " +
			"become PNG) unless image.encode says otherwise, when a later step writes the body. " +
			"The result holds width, height, format, source_width and source_height.",
		Fields: append([]nodes.Field{
			{Name: thumbWidth, Kind: nodes.Int, Default: 256, Min: 1, Max: 65535, Doc: "Box width in pixels."},
			{Name: thumbHeight, Kind: nodes.Int, Default: 256, Min: 1, Max: 65535, Doc: "Box height in pixels."},
			{Name: thumbMode, Kind: nodes.Enum, Options: []string{"fit", "fill", "exact"}, Default: "fit", Doc: "fit: inside the box, aspect kept; fill: cover the box and crop to it; exact: stretch to the box."},
			{Name: thumbAnchor, Kind: nodes.Enum, Options: anchorNames, Default: "center", Doc: "Which part fill mode keeps."},
			filterField(),
			{Name: thumbUpscale, Kind: nodes.Bool, Default: false, Doc: "Enlarge images smaller than the box (fit mode)."},
			{Name: thumbQuality, Kind: nodes.Int, Default: 85, Min: 1, Max: 100, Doc: "JPEG quality of the written thumbnail."},
		}, limitFields()...),
		Examples: []nodes.Example{
			{Title: "256 px thumbnail", YAML: "node: image.thumbnail\nwith:\n  width: 256\n  height: 256"},
			{Title: "Square avatar", YAML: "node: image.thumbnail\nwith:\n  width: 128\n  height: 128\n  mode: fill\n  anchor: top"},
		},
		New: newThumbnail,
	})
}

type thumbnail struct {
	w, h    int
	mode    string
	anchor  imaging.Anchor
	filter  imaging.ResampleFilter
	upscale bool
	quality int
	lim     Limits
}

func newThumbnail(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	return &thumbnail{
		w: c.Int(thumbWidth), h: c.Int(thumbHeight), mode: c.String(thumbMode),
		anchor: anchors[c.String(thumbAnchor)], filter: filters[c.String(fieldFilter)],
		upscale: c.Bool(thumbUpscale), quality: c.Int(thumbQuality), lim: limitsOf(c),
	}, nil
}

// target is the thumbnail's size for a w×h source, before any crop.
func (t *thumbnail) target(w, h int) (int, int) {
	switch t.mode {
	case "fill":
		return coverSize(w, h, t.w, t.h)
	case "exact":
		return t.w, t.h
	}
	return fitSize(w, h, t.w, t.h, t.upscale)
}

func (t *thumbnail) Process(ctx context.Context, env *nodes.Envelope) error {
	src, err := decoded(ctx, env, t.lim, t.target)
	if err != nil {
		return err
	}
	defer src.done()
	if err := ctx.Err(); err != nil {
		return err // decoding took the step's time: stop before resampling
	}
	w, h := t.target(src.size.X, src.size.Y)
	out := resized(src.img, w, h, t.filter)
	if t.mode == "fill" {
		out = imaging.CropAnchor(out, t.w, t.h, t.anchor)
	}
	setImageResult(env, src.img, out, withQuality(src.enc, t.quality), map[string]any{"source_width": src.size.X, "source_height": src.size.Y})
	return nil
}

var _ nodes.Node = (*thumbnail)(nil)
