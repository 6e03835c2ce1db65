package image

import (
	"context"
	"fmt"
	"image/png"
	"path"
	"strings"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "image.encode",
		Summary: "Choose how the image is written: JPEG (quality), PNG (compression level) or GIF; by name or by the target key's extension.",
		Description: "Takes effect when a later step reads the body (storage.put, respond…), which encodes once. " +
			"Metadata is always stripped: EXIF (camera, GPS position), XMP and comments are not written, and the " +
			"orientation is applied to the pixels instead. A transparent image written as JPEG is put on white. " +
			"The result holds format, content_type, width and height.",
		Fields: append([]nodes.Field{
			{Name: "format", Kind: nodes.Enum, Options: append([]string{"source"}, writeFormats...), Doc: "Output format; source keeps the input's (PNG for BMP, TIFF, WebP). Default: source, or from for_key."},
			{Name: "for_key", Kind: nodes.Template, Doc: "Derive the format from this key's extension (.jpg/.jpeg, .png, .gif): usually the key storage.put writes."},
			{Name: "quality", Kind: nodes.Int, Default: 85, Min: 1, Max: 100, Doc: "JPEG quality."},
			{Name: "png_compression", Kind: nodes.Enum, Options: []string{"default", "none", "fast", "best"}, Default: "default", Doc: "PNG compression level."},
			{Name: "gif_colors", Kind: nodes.Int, Default: 256, Min: 2, Max: 256, Doc: "Palette size of GIF output."},
		}, limitFields()...),
		Examples: []nodes.Example{
			{Title: "Small JPEGs", YAML: "node: image.encode\nwith:\n  format: jpeg\n  quality: 70"},
			{Title: "Format from the output key", YAML: "node: image.encode\nwith:\n  for_key: \"thumbs/{{ stem(object.key) }}.png\""},
		},
		New: newEncode,
	})
}

type encode struct {
	format string
	forKey *eval.Template
	enc    encoder
	lim    Limits
}

func newEncode(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	e := &encode{format: c.String("format"), forKey: c.Template("for_key"), lim: limitsOf(c)}
	if e.forKey != nil && c.Has("format") {
		return nil, c.Errorf("for_key", "set format or for_key, not both")
	}
	e.enc = encoder{quality: c.Int("quality"), gifColors: c.Int("gif_colors"), pngLevel: map[string]png.CompressionLevel{
		"default": png.DefaultCompression, "none": png.NoCompression, "fast": png.BestSpeed, "best": png.BestCompression,
	}[c.String("png_compression")]}
	return e, nil
}

// formatOfKey maps a key's extension to a format Sluice writes.
func formatOfKey(key string) (string, error) {
	switch ext := strings.ToLower(path.Ext(key)); ext {
	case ".jpg", ".jpeg", ".jpe":
		return "jpeg", nil
	case ".png":
		return "png", nil
	case ".gif":
		return "gif", nil
	default:
		return "", fmt.Errorf("key %q: cannot tell an image format Sluice writes from %q (use .jpg, .png or .gif)", key, ext)
	}
}

func (e *encode) Process(ctx context.Context, env *nodes.Envelope) error {
	src, err := decoded(ctx, env, e.lim, nil)
	if err != nil {
		return err
	}
	defer src.done()
	if err := ctx.Err(); err != nil {
		return err // decoding took the step's time: stop before resampling
	}
	enc := e.enc
	enc.format = e.format
	if e.forKey != nil {
		key, err := e.forKey.RenderContext(ctx, env.Vars())
		if err != nil {
			return nodes.ExprError(err)
		}
		if enc.format, err = formatOfKey(key); err != nil {
			return nodes.Permanent(err)
		}
	}
	if enc.format == "" || enc.format == "source" {
		enc.format = src.enc.Format()
	}
	// Always re-encoded, even unchanged: that is what strips the metadata.
	env.SetImage(src.img, enc, true)
	b := src.img.Bounds()
	env.SetResult(map[string]any{"format": enc.format, "content_type": "image/" + enc.format, "width": b.Dx(), "height": b.Dy()})
	return nil
}

var _ nodes.Node = (*encode)(nil)
