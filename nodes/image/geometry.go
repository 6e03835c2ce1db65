package image

import (
	"image"
	"math"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
)

// Resampling filters by name; Lanczos is the default everywhere.
var filters = map[string]imaging.ResampleFilter{
	"lanczos":    imaging.Lanczos,
	"catmullrom": imaging.CatmullRom,
	"linear":     imaging.Linear,
	"box":        imaging.Box,
	"nearest":    imaging.NearestNeighbor,
}

var filterNames = []string{"lanczos", "catmullrom", "linear", "box", "nearest"}

const fieldFilter = "filter"

func filterField() nodes.Field {
	return nodes.Field{Name: fieldFilter, Kind: nodes.Enum, Options: filterNames, Default: "lanczos",
		Doc: "Resampling filter: lanczos (sharpest), catmullrom, linear, box (fastest for big reductions), nearest."}
}

// Anchors for crops and placements.
var anchors = map[string]imaging.Anchor{
	"center": imaging.Center, "top-left": imaging.TopLeft, "top": imaging.Top, "top-right": imaging.TopRight,
	"left": imaging.Left, "right": imaging.Right,
	"bottom-left": imaging.BottomLeft, "bottom": imaging.Bottom, "bottom-right": imaging.BottomRight,
}

var anchorNames = []string{"center", "top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right"}

// fitSize is the size of a w×h image scaled to fit inside bw×bh with its
// aspect ratio kept; never larger than the source unless upscale.
func fitSize(w, h, bw, bh int, upscale bool) (int, int) {
	if !upscale && w <= bw && h <= bh {
		return w, h
	}
	r := min(float64(bw)/float64(w), float64(bh)/float64(h))
	return max(1, int(math.Round(float64(w)*r))), max(1, int(math.Round(float64(h)*r)))
}

// coverSize is the size of a w×h image scaled to cover bw×bh.
func coverSize(w, h, bw, bh int) (int, int) {
	r := max(float64(bw)/float64(w), float64(bh)/float64(h))
	return max(bw, int(math.Ceil(float64(w)*r))), max(bh, int(math.Ceil(float64(h)*r)))
}

// resized scales img to exactly w×h, or returns it when it already is.
func resized(img image.Image, w, h int, f imaging.ResampleFilter) image.Image {
	if b := img.Bounds(); b.Dx() == w && b.Dy() == h {
		return img
	}
	return imaging.Resize(img, w, h, f)
}

// setImageResult keeps out for the next steps (re-encoded when read, if it
// is not img) and records its size as the step's result.
func setImageResult(env *nodes.Envelope, img, out image.Image, enc nodes.ImageEncoder, extra map[string]any) {
	env.SetImage(out, enc, out != img)
	b := out.Bounds()
	res := map[string]any{"width": b.Dx(), "height": b.Dy(), "format": enc.Format()}
	for k, v := range extra {
		res[k] = v
	}
	env.SetResult(res)
}
