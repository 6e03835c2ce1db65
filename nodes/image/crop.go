package image

import (
	"context"
	"fmt"
	"image"
	"math"
	"strconv"
	"strings"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.crop",
		Summary: "Cut out part of an image: a rectangle, a size placed by an anchor, or the largest region of an aspect ratio.",
		Description: "Three ways, one per step: x/y/width/height (a rectangle, clipped to the image); width/height " +
			"with an anchor (center by default); or ratio such as 16:9 with an anchor (the largest region of that " +
			"shape). A rectangle entirely outside the image is a permanent error. The result holds width, height and format.",
		Fields: append([]nodes.Field{
			{Name: "x", Kind: nodes.Int, Min: 0, Max: 1 << 20, Doc: "Left edge of the rectangle (rectangle mode)."},
			{Name: "y", Kind: nodes.Int, Min: 0, Max: 1 << 20, Doc: "Top edge of the rectangle (rectangle mode)."},
			{Name: "width", Kind: nodes.Int, Min: 1, Max: 1 << 20, Doc: "Width of the region."},
			{Name: "height", Kind: nodes.Int, Min: 1, Max: 1 << 20, Doc: "Height of the region."},
			{Name: "anchor", Kind: nodes.Enum, Options: anchorNames, Default: "center", Doc: "Where the region sits (size and ratio modes)."},
			{Name: "ratio", Kind: nodes.String, Doc: "Aspect ratio W:H of the largest region kept, e.g. 16:9, 1:1, 4:3."},
		}, limitFields()...),
		Examples: []nodes.Example{
			{Title: "Square from the middle", YAML: "node: image.crop\nwith:\n  ratio: \"1:1\""},
			{Title: "A rectangle", YAML: "node: image.crop\nwith:\n  x: 100\n  y: 50\n  width: 640\n  height: 480"},
		},
		New: newCrop,
	})
}

type crop struct {
	rect   bool
	x, y   int
	w, h   int
	ratio  float64 // W/H, ratio mode when > 0
	anchor imaging.Anchor
	lim    Limits
}

func newCrop(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	k := &crop{
		rect: c.Has("x") || c.Has("y"), x: c.Int("x"), y: c.Int("y"), w: c.Int("width"), h: c.Int("height"),
		anchor: anchors[c.String("anchor")], lim: limitsOf(c),
	}
	sized := c.Has("width") || c.Has("height")
	if c.Has("ratio") {
		r, err := parseRatio(c.String("ratio"))
		if err != nil {
			c.Problemf("ratio", "%v", err)
		}
		k.ratio = r
		if sized || k.rect {
			c.Problemf("ratio", "ratio crops the largest region of that shape: do not also set x, y, width or height")
		}
	} else if !c.Has("width") || !c.Has("height") {
		c.Problemf("", "set width and height (with x/y for a rectangle, or an anchor), or a ratio")
	}
	if k.rect && c.Has("anchor") {
		c.Problemf("anchor", "anchor places a sized region: a rectangle (x, y) is placed already")
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	return k, nil
}

// parseRatio reads "W:H" with positive numbers.
func parseRatio(s string) (float64, error) {
	a, b, ok := strings.Cut(s, ":")
	w, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	h, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 || math.IsInf(w/h, 0) {
		return 0, fmt.Errorf("ratio %q is not W:H with positive numbers, such as 16:9", s)
	}
	return w / h, nil
}

func (k *crop) Process(ctx context.Context, env *nodes.Envelope) error {
	src, err := decoded(ctx, env, k.lim, nil)
	if err != nil {
		return err
	}
	defer src.done()
	if err := ctx.Err(); err != nil {
		return err // decoding took the step's time: stop before resampling
	}
	b := src.img.Bounds()
	var out image.Image
	switch {
	case k.ratio > 0:
		w, h := b.Dx(), int(math.Round(float64(b.Dx())/k.ratio))
		if h > b.Dy() {
			w, h = int(math.Round(float64(b.Dy())*k.ratio)), b.Dy()
		}
		out = imaging.CropAnchor(src.img, max(1, w), max(1, h), k.anchor)
	case k.rect:
		r := image.Rect(k.x, k.y, k.x+k.w, k.y+k.h).Add(b.Min).Intersect(b)
		if r.Empty() {
			return nodes.Permanent(fmt.Errorf("%s: crop rectangle %d,%d %d×%d lies outside the %d×%d image", sourceName(env), k.x, k.y, k.w, k.h, b.Dx(), b.Dy()))
		}
		out = imaging.Crop(src.img, r)
	default:
		out = imaging.CropAnchor(src.img, min(k.w, b.Dx()), min(k.h, b.Dy()), k.anchor)
	}
	if out.Bounds().Size() == b.Size() {
		out = src.img // nothing cut: keep the body as it is
	}
	setImageResult(env, src.img, out, src.enc, nil)
	return nil
}

var _ nodes.Node = (*crop)(nil)
