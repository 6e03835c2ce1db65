package image

import (
	"context"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:        "image.fit",
		Summary:     "Scale an image down to fit inside a box, aspect ratio kept.",
		Description: "Images already inside the box are left alone unless upscale is set. The result holds width, height and format.",
		Fields: append([]nodes.Field{
			{Name: "width", Kind: nodes.Int, Required: true, Min: 1, Max: 65535, Doc: "Box width in pixels."},
			{Name: "height", Kind: nodes.Int, Required: true, Min: 1, Max: 65535, Doc: "Box height in pixels."},
			{Name: "upscale", Kind: nodes.Bool, Default: false, Doc: "Enlarge images smaller than the box."},
			filterField(),
		}, limitFields()...),
		Examples: []nodes.Example{{Title: "Web size", YAML: "node: image.fit\nwith:\n  width: 1920\n  height: 1080"}},
		New:      newFit,
	})
}

type fit struct {
	w, h    int
	upscale bool
	filter  imaging.ResampleFilter
	lim     Limits
}

func newFit(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	return &fit{w: c.Int("width"), h: c.Int("height"), upscale: c.Bool("upscale"), filter: filters[c.String(fieldFilter)], lim: limitsOf(c)}, nil
}

func (f *fit) target(w, h int) (int, int) { return fitSize(w, h, f.w, f.h, f.upscale) }

func (f *fit) Process(ctx context.Context, env *nodes.Envelope) error {
	src, err := decoded(ctx, env, f.lim, f.target)
	if err != nil {
		return err
	}
	defer src.done()
	if err := ctx.Err(); err != nil {
		return err // decoding took the step's time: stop before resampling
	}
	w, h := f.target(src.size.X, src.size.Y)
	setImageResult(env, src.img, resized(src.img, w, h, f.filter), src.enc, nil)
	return nil
}

var _ nodes.Node = (*fit)(nil)
