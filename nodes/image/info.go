package image

import (
	"bytes"
	"context"
	"fmt"
	"image"

	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.info",
		Summary: "Read an image's format, size, EXIF orientation and byte count into the payload, without decoding its pixels.",
		Description: "Reads only the header of the body as it stands (after earlier image steps, the encoded " +
			"result: image.info after a thumbnail describes the thumbnail). width and height are as displayed, " +
			"orientation applied. The result, and the payload field named by into, hold format, content_type, " +
			"width, height, orientation (1-8) and bytes.",
		Fields: []nodes.Field{
			{Name: "into", Kind: nodes.String, Default: "image", Doc: "Payload field to store the info in (the payload must be an object or empty); empty: the step result only."},
		},
		Examples: []nodes.Example{{Title: "Record the source's size", YAML: "node: image.info\nwith:\n  into: source"}},
		New:      newInfo,
	})
}

type info struct{ into string }

func newInfo(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	return &info{into: c.String("into")}, nil
}

func (n *info) Process(ctx context.Context, env *nodes.Envelope) error {
	// A header, EXIF included, is within the first 256 KiB: an object's
	// body is not read whole for it.
	body, size, err := env.Head(ctx, 256<<10)
	if err != nil {
		return err
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		return nodes.Permanent(fmt.Errorf("%s: %w (%v)", sourceName(env), ErrNotImage, err))
	}
	orient := 1
	if format == "jpeg" {
		orient = orientation(body)
	}
	w, h := cfg.Width, cfg.Height
	if orient >= 5 {
		w, h = h, w
	}
	res := map[string]any{"format": format, "content_type": "image/" + format, "width": w, "height": h, "orientation": orient, "bytes": int(size)}
	env.SetResult(res)
	if n.into == "" {
		return nil
	}
	return env.SetPayloadField(n.into, res)
}

var _ nodes.Node = (*info)(nil)
