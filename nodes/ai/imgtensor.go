package ai

import (
	"fmt"
	"image"
	"image/draw"
	"math"

	"github.com/disintegration/imaging"
)

// imageSpec turns an image into a model input.
type imageSpec struct {
	width, height int    // 0: take the model's
	layout        string // "NCHW", "NHWC"
	channels      string // "rgb", "bgr", "gray"
	fit           string // "stretch", "pad", "height"
	scale         float32
	mean, std     []float32 // per channel, len 1 or 3
}

// nchan is the number of channels of the tensor.
func (s imageSpec) nchan() int {
	if s.channels == "gray" {
		return 1
	}
	return 3
}

// shape is the tensor's shape for a w×h input.
func (s imageSpec) shape(w, h int) []int64 {
	c := int64(s.nchan())
	if s.layout == "NHWC" {
		return []int64{1, int64(h), int64(w), c}
	}
	return []int64{1, c, int64(h), int64(w)}
}

// resolve fills width and height from a model input's fixed dimensions
// and checks the rest against it.
func (s *imageSpec) resolve(in Info) error {
	if len(in.Shape) != 4 {
		return fmt.Errorf("input %s is not an image tensor (rank 4, %s)", in, s.layout)
	}
	hi, wi, ci := 2, 3, 1
	if s.layout == "NHWC" {
		hi, wi, ci = 1, 2, 3
	}
	if c := in.Shape[ci]; c >= 0 && c != int64(s.nchan()) {
		return fmt.Errorf("input %s wants %d channels in layout %s, the image gives %d (channels %s)", in, c, s.layout, s.nchan(), s.channels)
	}
	if b := in.Shape[0]; b > 1 {
		return fmt.Errorf("input %s wants a batch of %d, an image is a batch of 1", in, b)
	}
	for _, d := range []struct {
		dim  int64
		v    *int
		name string
	}{{in.Shape[hi], &s.height, "height"}, {in.Shape[wi], &s.width, "width"}} {
		switch {
		case d.dim >= 0 && *d.v == 0:
			*d.v = int(d.dim)
		case d.dim >= 0 && int64(*d.v) != d.dim:
			return fmt.Errorf("input %s has a fixed %s of %d, configured %d", in, d.name, d.dim, *d.v)
		case d.dim < 0 && *d.v == 0:
			return fmt.Errorf("input %s has a dynamic %s: set image.%s", in, d.name, d.name)
		}
	}
	switch in.Type {
	case Float32, Uint8:
	default:
		return fmt.Errorf("input %s: images become float32 or uint8 tensors, not %s", in, in.Type)
	}
	return nil
}

// tensor converts img for a model input of element type typ.
func (s imageSpec) tensor(img image.Image, typ string) Tensor {
	w, h := s.width, s.height
	var src *image.NRGBA
	b := img.Bounds()
	if s.fit == "height" {
		// To the height; the width the aspect gives, squeezed to the box
		// when wider, padded right with zeros when narrower (PaddleOCR).
		nw := min(w, max(1, int(math.Ceil(float64(h)*float64(b.Dx())/float64(b.Dy())))))
		src = image.NewNRGBA(image.Rect(0, 0, w, h))
		r := imaging.Resize(img, nw, h, imaging.Linear)
		draw.Draw(src, r.Bounds(), r, image.Point{}, draw.Src)
	} else if s.fit == "pad" {
		// Inside the box, aspect kept, at the top left; the rest zero.
		sw, sh := b.Dx(), b.Dy()
		nw, nh := w, sh*w/sw
		if nh > h {
			nw, nh = sw*h/sh, h
		}
		src = image.NewNRGBA(image.Rect(0, 0, w, h))
		r := imaging.Resize(img, max(nw, 1), max(nh, 1), imaging.Linear)
		draw.Draw(src, r.Bounds(), r, image.Point{}, draw.Src)
	} else if b.Dx() == w && b.Dy() == h {
		src = imaging.Clone(img)
	} else {
		src = imaging.Resize(img, w, h, imaging.Linear)
	}
	c := s.nchan()
	n := w * h * c
	// index of channel k of pixel i in the tensor
	at := func(i, k int) int { return k*w*h + i }
	if s.layout == "NHWC" {
		at = func(i, k int) int { return i*c + k }
	}
	order := [3]int{0, 1, 2}
	if s.channels == "bgr" {
		order = [3]int{2, 1, 0}
	}
	sh := s.shape(w, h)
	if typ == Uint8 {
		out := make([]uint8, n)
		for i := 0; i < w*h; i++ {
			p := src.Pix[4*i : 4*i+3]
			if c == 1 {
				out[at(i, 0)] = gray(p)
				continue
			}
			for k := range 3 {
				out[at(i, k)] = p[order[k]]
			}
		}
		return Tensor{Shape: sh, Data: out}
	}
	out := make([]float32, n)
	mean := func(k int) float32 { return s.mean[k%len(s.mean)] }
	std := func(k int) float32 { return s.std[k%len(s.std)] }
	for i := 0; i < w*h; i++ {
		p := src.Pix[4*i : 4*i+3]
		if c == 1 {
			out[at(i, 0)] = (float32(gray(p))*s.scale - mean(0)) / std(0)
			continue
		}
		for k := range 3 {
			out[at(i, k)] = (float32(p[order[k]])*s.scale - mean(k)) / std(k)
		}
	}
	return Tensor{Shape: sh, Data: out}
}

func gray(p []uint8) uint8 {
	return uint8((299*int(p[0]) + 587*int(p[1]) + 114*int(p[2]) + 500) / 1000)
}
