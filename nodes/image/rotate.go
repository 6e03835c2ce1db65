package image

import (
	"context"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.rotate",
		Summary: "Rotate an image by a quarter turn, a half turn, or three, clockwise; and/or flip it.",
		Description: "Rotation comes first, then the flip. EXIF orientation is already applied on decode: " +
			"this is for turning images their metadata does not describe. The result holds width, height and format.",
		Fields: append([]nodes.Field{
			{Name: "angle", Kind: nodes.Enum, Options: []string{"0", "90", "180", "270"}, Default: "0", Doc: "Clockwise rotation in degrees."},
			{Name: "flip", Kind: nodes.Enum, Options: []string{"none", "horizontal", "vertical"}, Default: "none", Doc: "Mirror left-right (horizontal) or top-bottom (vertical)."},
		}, limitFields()...),
		Examples: []nodes.Example{{Title: "Quarter turn clockwise", YAML: "node: image.rotate\nwith:\n  angle: 90"}},
		New:      newRotate,
	})
}

type rotate struct {
	angle, flip string
	lim         Limits
}

func newRotate(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	r := &rotate{angle: c.String("angle"), flip: c.String("flip"), lim: limitsOf(c)}
	if r.angle == "0" && r.flip == "none" {
		return nil, c.Errorf("", "set angle (90, 180, 270), flip, or both: this step would do nothing")
	}
	return r, nil
}

func (r *rotate) Process(ctx context.Context, env *nodes.Envelope) error {
	src, err := decoded(ctx, env, r.lim, nil)
	if err != nil {
		return err
	}
	defer src.done()
	if err := ctx.Err(); err != nil {
		return err // decoding took the step's time: stop before resampling
	}
	out := src.img
	switch r.angle { // imaging turns counter-clockwise
	case "90":
		out = imaging.Rotate270(out)
	case "180":
		out = imaging.Rotate180(out)
	case "270":
		out = imaging.Rotate90(out)
	}
	switch r.flip {
	case "horizontal":
		out = imaging.FlipH(out)
	case "vertical":
		out = imaging.FlipV(out)
	}
	setImageResult(env, src.img, out, src.enc, nil)
	return nil
}

var _ nodes.Node = (*rotate)(nil)
