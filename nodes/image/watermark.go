package image

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/disintegration/imaging"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.watermark",
		Summary: "Stamp text (bundled Go fonts, or a TrueType file) or an overlay image (PNG from a file or a bucket) on an image.",
		Description: "Sizes are relative to the image's width, so one step suits every image size: size 0.05 " +
			"makes text 5% of the width tall, scale 0.2 makes an overlay a fifth of the width. Placed at a " +
			"position with a margin, or tiled across the image. Set text or image, not both. An overlay from a " +
			"bucket is read on first use and kept for the life of the flow. The result holds width, height and format.",
		Fields: append([]nodes.Field{
			{Name: "text", Kind: nodes.Template, Doc: "Text to stamp; may use {{ }} expressions, e.g. \"© {{ payload.owner }}\"."},
			{Name: "font", Kind: nodes.Enum, Options: []string{"regular", "bold", "mono"}, Default: "bold", Doc: "Bundled Go font (BSD licence)."},
			{Name: "font_file", Kind: nodes.String, Doc: "A TrueType or OpenType font file to use instead."},
			{Name: "size", Kind: nodes.Float, Default: 0.05, Min: 0.001, Max: 1, Doc: "Text height as a fraction of the image width."},
			{Name: "color", Kind: nodes.String, Default: "#ffffff", Doc: "Text colour: #rgb, #rrggbb, or a name (white, black, red, …)."},
			{Name: "image", Kind: nodes.Object, Doc: "Overlay image (PNG keeps its transparency): a file, or an object in a bucket.", Fields: []nodes.Field{
				{Name: "file", Kind: nodes.String, Doc: "Path of the overlay file."},
				{Name: "bucket", Kind: nodes.String, Role: nodes.RoleBucket, Doc: "Bucket of the overlay object."},
				{Name: "key", Kind: nodes.String, Doc: "Key of the overlay object."},
			}},
			{Name: "scale", Kind: nodes.Float, Default: 0.2, Min: 0.001, Max: 1, Doc: "Overlay width as a fraction of the image width."},
			{Name: "opacity", Kind: nodes.Float, Default: 0.5, Min: 0, Max: 1, Doc: "0 invisible, 1 opaque."},
			{Name: "position", Kind: nodes.Enum, Options: anchorNames, Default: "bottom-right", Doc: "Where the mark sits (ignored when tiled)."},
			{Name: "margin", Kind: nodes.Float, Default: 0.02, Min: 0, Max: 0.5, Doc: "Distance from the edges as a fraction of the image width."},
			{Name: "tile", Kind: nodes.Bool, Default: false, Doc: "Repeat the mark across the whole image."},
		}, limitFields()...),
		Examples: []nodes.Example{
			{Title: "Copyright line", YAML: "node: image.watermark\nwith:\n  text: \"© Example Photos\"\n  opacity: 0.6"},
			{Title: "Logo from a bucket", YAML: "node: image.watermark\nwith:\n  image: {bucket: assets, key: logo.png}\n  scale: 0.15\n  position: top-right"},
		},
		New: newWatermark,
	})
}

type watermark struct {
	text     *eval.Template
	face     *opentype.Font
	size     float64
	color    color.NRGBA
	scale    float64
	opacity  float64
	position string
	margin   float64
	tile     bool
	lim      Limits
	overlay  *overlaySource

	mu    sync.Mutex
	masks map[markKey]*image.NRGBA // rendered marks by text and size
}

type markKey struct {
	text  string
	width int // of the image the mark is sized for
}

func newWatermark(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	w := &watermark{
		text: c.Template("text"), size: c.Float("size"), scale: c.Float("scale"), opacity: c.Float("opacity"),
		position: c.String("position"), margin: c.Float("margin"), tile: c.Bool("tile"), lim: limitsOf(c),
		masks: map[markKey]*image.NRGBA{},
	}
	img := c.Object("image")
	switch {
	case w.text == nil && img == nil:
		c.Problemf("", "set text or image")
	case w.text != nil && img != nil:
		c.Problemf("image", "set text or image, not both")
	}
	if w.text != nil {
		ttf := map[string][]byte{"regular": goregular.TTF, "bold": gobold.TTF, "mono": gomono.TTF}[c.String("font")]
		if c.Has("font_file") {
			b, err := os.ReadFile(c.String("font_file"))
			if err != nil {
				c.Problemf("font_file", "%v", err)
			}
			ttf = b
		}
		f, err := opentype.Parse(ttf)
		if err != nil && ttf != nil {
			c.Problemf("font_file", "not a TrueType/OpenType font: %v", err)
		}
		w.face = f
		col, err := parseColor(c.String("color"))
		if err != nil {
			c.Problemf("color", "%v", err)
		}
		w.color = col
	}
	if img != nil {
		w.overlay = newOverlaySource(img, d, w.lim)
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *watermark) Process(ctx context.Context, env *nodes.Envelope) error {
	src, err := decoded(ctx, env, w.lim, nil)
	if err != nil {
		return err
	}
	defer src.done()
	if err := ctx.Err(); err != nil {
		return err // decoding took the step's time: stop before resampling
	}
	var mark *image.NRGBA
	if w.overlay != nil {
		if mark, err = w.overlayMark(ctx, src.img.Bounds().Dx()); err != nil {
			return err
		}
	} else {
		text, err := w.text.RenderContext(ctx, env.Vars())
		if err != nil {
			return nodes.ExprError(err)
		}
		if mark, err = w.textMark(text, src.img.Bounds().Dx()); err != nil {
			return err
		}
	}
	// The kept image is this run's own: stamp it in place when it can be.
	base, ok := src.img.(*image.NRGBA)
	if !ok {
		base = imaging.Clone(src.img)
	}
	if mark != nil {
		w.stamp(base, mark)
	}
	env.SetImage(base, src.enc, true)
	b := base.Bounds()
	env.SetResult(map[string]any{"width": b.Dx(), "height": b.Dy(), "format": src.enc.Format()})
	return nil
}

// stamp draws mark on base at the configured place, or tiled.
func (w *watermark) stamp(base, mark *image.NRGBA) {
	b, m := base.Bounds(), mark.Bounds()
	mask := image.NewUniform(color.Alpha{uint8(math.Round(w.opacity * 255))})
	draw1 := func(p image.Point) {
		draw.DrawMask(base, m.Add(p), mark, m.Min, mask, image.Point{}, draw.Over)
	}
	margin := int(math.Round(w.margin * float64(b.Dx())))
	if w.tile {
		stepX, stepY := m.Dx()+max(m.Dx()/2, 1), m.Dy()*3
		for y := b.Min.Y + margin; y < b.Max.Y; y += stepY {
			for x := b.Min.X + margin; x < b.Max.X; x += stepX {
				draw1(image.Pt(x, y))
			}
		}
		return
	}
	var x, y int
	switch {
	case strings.HasSuffix(w.position, "left"):
		x = b.Min.X + margin
	case strings.HasSuffix(w.position, "right"):
		x = b.Max.X - margin - m.Dx()
	default:
		x = b.Min.X + (b.Dx()-m.Dx())/2
	}
	switch {
	case strings.HasPrefix(w.position, "top"):
		y = b.Min.Y + margin
	case strings.HasPrefix(w.position, "bottom"):
		y = b.Max.Y - margin - m.Dy()
	default:
		y = b.Min.Y + (b.Dy()-m.Dy())/2
	}
	draw1(image.Pt(x, y))
}

const maxMarks = 64 // rendered marks kept; cleared when full

func (w *watermark) cached(k markKey, render func() (*image.NRGBA, error)) (*image.NRGBA, error) {
	w.mu.Lock()
	m, ok := w.masks[k]
	w.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := render()
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	if len(w.masks) >= maxMarks {
		clear(w.masks)
	}
	w.masks[k] = m
	w.mu.Unlock()
	return m, nil
}

// textMark renders text in the configured colour, sized for an image
// width wide; nil for empty text.
func (w *watermark) textMark(text string, width int) (*image.NRGBA, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	return w.cached(markKey{text, width}, func() (*image.NRGBA, error) {
		px := max(4, w.size*float64(width))
		face, err := opentype.NewFace(w.face, &opentype.FaceOptions{Size: px, DPI: 72, Hinting: font.HintingNone})
		if err != nil {
			return nil, nodes.Permanent(fmt.Errorf("watermark font: %w", err))
		}
		defer face.Close()
		bounds, _ := font.BoundString(face, text)
		r := image.Rect(bounds.Min.X.Floor(), bounds.Min.Y.Floor(), bounds.Max.X.Ceil(), bounds.Max.Y.Ceil())
		mark := image.NewNRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
		d := font.Drawer{Dst: mark, Src: image.NewUniform(w.color), Face: face, Dot: fixed.P(-r.Min.X, -r.Min.Y)}
		d.DrawString(text)
		return mark, nil
	})
}

// overlayMark is the overlay scaled for an image width wide.
func (w *watermark) overlayMark(ctx context.Context, width int) (*image.NRGBA, error) {
	img, err := w.overlay.get(ctx)
	if err != nil {
		return nil, err
	}
	return w.cached(markKey{"", width}, func() (*image.NRGBA, error) {
		ow := max(1, int(math.Round(w.scale*float64(width))))
		return imaging.Resize(img, ow, 0, imaging.Lanczos), nil
	})
}

// parseColor reads #rgb, #rrggbb, #rrggbbaa or a basic colour name.
func parseColor(s string) (color.NRGBA, error) {
	names := map[string]string{"white": "#ffffff", "black": "#000000", "red": "#ff0000", "green": "#00ff00",
		"blue": "#0000ff", "yellow": "#ffff00", "gray": "#808080", "grey": "#808080"}
	if hex, ok := names[strings.ToLower(s)]; ok {
		s = hex
	}
	h := strings.TrimPrefix(s, "#")
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	if len(h) == 6 {
		h += "ff"
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if len(h) != 8 || err != nil || !strings.HasPrefix(s, "#") {
		return color.NRGBA{}, fmt.Errorf("colour %q is not #rgb, #rrggbb, #rrggbbaa or a colour name", s)
	}
	return color.NRGBA{uint8(v >> 24), uint8(v >> 16), uint8(v >> 8), uint8(v)}, nil
}

var _ nodes.Node = (*watermark)(nil)
