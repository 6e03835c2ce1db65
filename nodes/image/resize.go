package image

import (
	"context"
	"math"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.resize",
		Summary: "Scale an image to a width and/or height (a missing side keeps the aspect ratio).",
		Description: "Enlarges as well as shrinks. The result holds width, height and format. " +
			"See image.fit to stay inside a box, image.thumbnail for thumbnails.",
		Fields: append([]nodes.Field{
			{Name: "width", Kind: nodes.Int, Min: 1, Max: 65535, Doc: "Target width in pixels; from the height and the aspect ratio when absent."},
			{Name: "height", Kind: nodes.Int, Min: 1, Max: 65535, Doc: "Target height in pixels; from the width and the aspect ratio when absent."},
			filterField(),
		}, limitFields()...),
		Examples: []nodes.Example{{Title: "1024 px wide", YAML: "node: image.resize\nwith:\n  width: 1024"}},
		New:      newResize,
	})
}

type resize struct {
	w, h   int
	filter imaging.ResampleFilter
	lim    Limits
}

func newResize(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	if !c.Has("width") && !c.Has("height") {
		return nil, c.Errorf("", "set width, height or both")
	}
	return &resize{w: c.Int("width"), h: c.Int("height"), filter: filters[c.String(fieldFilter)], lim: limitsOf(c)}, nil
}

func (r *resize) target(w, h int) (int, int) {
	switch {
	case r.w > 0 && r.h > 0:
		return r.w, r.h
	case r.w > 0:
		return r.w, max(1, int(math.Round(float64(h)*float64(r.w)/float64(w))))
	}
	return max(1, int(math.Round(float64(w)*float64(r.h)/float64(h)))), r.h
}

func (r *resize) Process(ctx context.Context, env *nodes.Envelope) error {
	src, err := decoded(ctx, env, r.lim, r.target)
	if err != nil {
		return err
	}
	defer src.done()
	if err := ctx.Err(); err != nil {
		return err // decoding took the step's time: stop before resampling
	}
	w, h := r.target(src.size.X, src.size.Y)
	setImageResult(env, src.img, resized(src.img, w, h, r.filter), src.enc, nil)
	return nil
}

var _ nodes.Node = (*resize)(nil)
