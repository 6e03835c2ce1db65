package ai

import (
	"image"
	"math"
	"sort"
)

// The geometry of PaddleOCR's DB post-processing: the detector's
// probability map is thresholded into a bitmap; each connected region is a
// text candidate, kept when the map's mean inside its minimal rotated
// rectangle reaches the box threshold, then grown ("unclipped") by a
// distance of area × ratio / perimeter, since the detector is trained on
// shrunk text regions.

type pt struct{ x, y float64 }

func (a pt) sub(b pt) pt             { return pt{a.x - b.x, a.y - b.y} }
func (a pt) add(b pt) pt             { return pt{a.x + b.x, a.y + b.y} }
func (a pt) mul(k float64) pt        { return pt{a.x * k, a.y * k} }
func (a pt) dot(b pt) float64        { return a.x*b.x + a.y*b.y }
func (a pt) cross(b pt) float64      { return a.x*b.y - a.y*b.x }
func (a pt) norm() float64           { return math.Hypot(a.x, a.y) }
func (a pt) unit() pt                { return a.mul(1 / a.norm()) }
func cross3(o, a, b pt) float64      { return a.sub(o).cross(b.sub(o)) }
func (a pt) scale(sx, sy float64) pt { return pt{a.x * sx, a.y * sy} }

// rect is a rotated rectangle: center, unit vector u along its width (the
// text's direction, pointing right), v along its height (pointing down),
// width w ≥ 0 and height h ≥ 0.
type rect struct {
	c    pt
	u, v pt
	w, h float64
}

// corners returns the top-left, top-right, bottom-right and bottom-left
// corners.
func (r rect) corners() [4]pt {
	hu, hv := r.u.mul(r.w/2), r.v.mul(r.h/2)
	return [4]pt{r.c.sub(hu).sub(hv), r.c.add(hu).sub(hv), r.c.add(hu).add(hv), r.c.sub(hu).add(hv)}
}

// convexHull returns the hull of ps counter-clockwise (monotone chain).
func convexHull(ps []pt) []pt {
	sort.Slice(ps, func(i, j int) bool { return ps[i].x < ps[j].x || ps[i].x == ps[j].x && ps[i].y < ps[j].y })
	if len(ps) < 3 {
		return ps
	}
	h := make([]pt, 0, 2*len(ps))
	for _, p := range ps {
		for len(h) >= 2 && cross3(h[len(h)-2], h[len(h)-1], p) <= 0 {
			h = h[:len(h)-1]
		}
		h = append(h, p)
	}
	lower := len(h) + 1
	for i := len(ps) - 2; i >= 0; i-- {
		p := ps[i]
		for len(h) >= lower && cross3(h[len(h)-2], h[len(h)-1], p) <= 0 {
			h = h[:len(h)-1]
		}
		h = append(h, p)
	}
	return h[:len(h)-1]
}

// minAreaRect returns the smallest rotated rectangle around a convex hull
// (one of its sides lies on a hull edge), oriented as text: width along
// the longer side, u pointing right, v down.
func minAreaRect(hull []pt) rect {
	best := rect{w: math.Inf(1), h: 1}
	for i := range hull {
		e := hull[(i+1)%len(hull)].sub(hull[i])
		if e.norm() == 0 {
			continue
		}
		u := e.unit()
		v := pt{-u.y, u.x}
		minU, maxU, minV, maxV := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
		for _, p := range hull {
			a, b := p.dot(u), p.dot(v)
			minU, maxU, minV, maxV = min(minU, a), max(maxU, a), min(minV, b), max(maxV, b)
		}
		w, h := maxU-minU, maxV-minV
		if w*h < best.w*best.h {
			c := u.mul((minU + maxU) / 2).add(v.mul((minV + maxV) / 2))
			best = rect{c: c, u: u, v: v, w: w, h: h}
		}
	}
	if math.IsInf(best.w, 1) {
		return rect{}
	}
	if best.h > best.w {
		best.u, best.v, best.w, best.h = best.v, best.u, best.h, best.w
	}
	// The text's direction is the long side's, read left to right; v then
	// points down.
	if best.u.x < 0 || best.u.x == 0 && best.u.y < 0 {
		best.u = best.u.mul(-1)
	}
	best.v = pt{-best.u.y, best.u.x}
	return best
}

// region is a connected region of the detector's bitmap.
type region struct {
	r     rect
	score float64
}

// detRegions labels the 8-connected regions of prob > thresh (a w×h map)
// and returns those whose rectangle scores at least boxThresh, at most
// maxRegions of them (the largest first when there are more).
func detRegions(prob []float32, w, h int, thresh, boxThresh float32, maxRegions int) []region {
	label := make([]int32, w*h)
	var out []region
	var stack []int32
	var next int32
	// Per row of the region: its leftmost and rightmost pixels.
	rows := map[int][2]int{}
	for start := range prob {
		if label[start] != 0 || prob[start] <= thresh {
			continue
		}
		next++
		label[start] = next
		stack = append(stack[:0], int32(start))
		clear(rows)
		n := 0
		for len(stack) > 0 {
			p := int(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			n++
			x, y := p%w, p/w
			if r, ok := rows[y]; ok {
				rows[y] = [2]int{min(r[0], x), max(r[1], x)}
			} else {
				rows[y] = [2]int{x, x}
			}
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					nx, ny := x+dx, y+dy
					if nx < 0 || ny < 0 || nx >= w || ny >= h {
						continue
					}
					q := ny*w + nx
					if label[q] == 0 && prob[q] > thresh {
						label[q] = next
						stack = append(stack, int32(q))
					}
				}
			}
		}
		if n < 4 {
			continue
		}
		ps := make([]pt, 0, 4*len(rows))
		for y, r := range rows {
			fy := float64(y)
			ps = append(ps, pt{float64(r[0]), fy}, pt{float64(r[0]), fy + 1}, pt{float64(r[1] + 1), fy}, pt{float64(r[1] + 1), fy + 1})
		}
		r := minAreaRect(convexHull(ps))
		if min(r.w, r.h) < 2 {
			continue
		}
		s := rectMean(prob, w, h, r)
		if s < float64(boxThresh) {
			continue
		}
		out = append(out, region{r: r, score: s})
	}
	if len(out) > maxRegions {
		sort.Slice(out, func(i, j int) bool { return out[i].r.w*out[i].r.h > out[j].r.w*out[j].r.h })
		out = out[:maxRegions]
	}
	return out
}

// rectMean is the mean of the map over the pixels whose centers lie in r.
func rectMean(prob []float32, w, h int, r rect) float64 {
	cs := r.corners()
	x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, c := range cs {
		x0, y0, x1, y1 = min(x0, c.x), min(y0, c.y), max(x1, c.x), max(y1, c.y)
	}
	sum, n := 0.0, 0
	for y := max(0, int(y0)); y < min(h, int(math.Ceil(y1))); y++ {
		for x := max(0, int(x0)); x < min(w, int(math.Ceil(x1))); x++ {
			d := pt{float64(x) + 0.5, float64(y) + 0.5}.sub(r.c)
			if math.Abs(d.dot(r.u)) <= r.w/2 && math.Abs(d.dot(r.v)) <= r.h/2 {
				sum += float64(prob[y*w+x])
				n++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// unclip grows r by area × ratio / perimeter on every side.
func unclip(r rect, ratio float64) rect {
	d := r.w * r.h * ratio / (2 * (r.w + r.h))
	r.w += 2 * d
	r.h += 2 * d
	return r
}

// cropLine samples the region r of src (in src's pixel coordinates) into
// an image of height outH, its width keeping r's aspect (at most maxW),
// rotated so the text runs left to right; flip turns it by 180°. Each
// output pixel averages a grid of samples as fine as the source's pixels,
// so large text is not aliased.
func cropLine(src *image.NRGBA, r rect, outH, maxW int) *image.NRGBA {
	outW := max(1, min(maxW, int(math.Round(r.w*float64(outH)/max(r.h, 1)))))
	out := image.NewNRGBA(image.Rect(0, 0, outW, outH))
	sx, sy := r.w/float64(outW), r.h/float64(outH) // source pixels per output pixel
	kx, ky := max(1, int(math.Ceil(sx))), max(1, int(math.Ceil(sy)))
	origin := r.c.sub(r.u.mul(r.w / 2)).sub(r.v.mul(r.h / 2))
	b := src.Bounds()
	for j := range outH {
		for i := range outW {
			var acc [3]float64
			for b2 := range ky {
				for a := range kx {
					fu := (float64(i) + (float64(a)+0.5)/float64(kx)) * sx
					fv := (float64(j) + (float64(b2)+0.5)/float64(ky)) * sy
					p := origin.add(r.u.mul(fu)).add(r.v.mul(fv))
					c := bilinear(src, b, p.x-0.5, p.y-0.5)
					acc[0] += c[0]
					acc[1] += c[1]
					acc[2] += c[2]
				}
			}
			k := float64(kx * ky)
			o := out.PixOffset(i, j)
			out.Pix[o] = uint8(acc[0]/k + 0.5)
			out.Pix[o+1] = uint8(acc[1]/k + 0.5)
			out.Pix[o+2] = uint8(acc[2]/k + 0.5)
			out.Pix[o+3] = 255
		}
	}
	return out
}

// bilinear samples src at (x, y) in pixel-center coordinates, clamping at
// the edges.
func bilinear(src *image.NRGBA, b image.Rectangle, x, y float64) [3]float64 {
	x0, y0 := math.Floor(x), math.Floor(y)
	fx, fy := x-x0, y-y0
	ix, iy := int(x0), int(y0)
	clampX := func(v int) int { return min(max(v, b.Min.X), b.Max.X-1) }
	clampY := func(v int) int { return min(max(v, b.Min.Y), b.Max.Y-1) }
	xa, xb, ya, yb := clampX(ix), clampX(ix+1), clampY(iy), clampY(iy+1)
	var out [3]float64
	p00, p10 := src.PixOffset(xa, ya), src.PixOffset(xb, ya)
	p01, p11 := src.PixOffset(xa, yb), src.PixOffset(xb, yb)
	for k := range 3 {
		top := float64(src.Pix[p00+k])*(1-fx) + float64(src.Pix[p10+k])*fx
		bot := float64(src.Pix[p01+k])*(1-fx) + float64(src.Pix[p11+k])*fx
		out[k] = top*(1-fy) + bot*fy
	}
	return out
}

// rotate180 turns an image upside down, in place.
func rotate180(img *image.NRGBA) {
	p := img.Pix
	for i, j := 0, len(p)-4; i < j; i, j = i+4, j-4 {
		p[i], p[i+1], p[i+2], p[i+3], p[j], p[j+1], p[j+2], p[j+3] = p[j], p[j+1], p[j+2], p[j+3], p[i], p[i+1], p[i+2], p[i+3]
	}
}

// mergeRows joins boxes that continue one another on a text row (same
// direction, overlapping vertically, less than gap × their height apart)
// into line boxes: the detector often finds a line word by word, and a
// recognizer reading a whole line sees the spaces between words and none of
// a neighbour's letters that a grown word box would overlap.
func mergeRows(rs []rect, gap float64) []rect {
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(rs) && !merged; i++ {
			for j := i + 1; j < len(rs); j++ {
				a, b := rs[i], rs[j]
				if a.u.dot(b.u) < 0.995 {
					continue
				}
				d := b.c.sub(a.c)
				h := min(a.h, b.h)
				if math.Abs(d.dot(a.v)) > 0.5*h || max(a.h, b.h) > 2*h {
					continue
				}
				if math.Abs(d.dot(a.u))-(a.w+b.w)/2 > gap*max(a.h, b.h) {
					continue
				}
				ca, cb := a.corners(), b.corners()
				m := minAreaRect(convexHull(append(ca[:], cb[:]...)))
				rs[i] = m
				rs = append(rs[:j], rs[j+1:]...)
				merged = true
				break
			}
		}
	}
	return rs
}
