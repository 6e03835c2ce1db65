// Package ocrtest measures recognized text against the truth, for the OCR
// tests and benchmarks.
package ocrtest

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math/rand"
	"strings"

	"github.com/disintegration/imaging"
	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Normalize collapses runs of white space (line breaks included) to one
// space and trims the ends: OCR is judged on characters, not on how it
// split lines.
func Normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// Distance is the Levenshtein distance between a and b, in runes.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			c := prev[j-1]
			if ra[i-1] != rb[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// Accuracy is 1 − Distance / the truth's length, of normalized texts
// (0 at worst).
func Accuracy(got, want string) float64 {
	g, w := Normalize(got), Normalize(want)
	if len(w) == 0 {
		if len(g) == 0 {
			return 1
		}
		return 0
	}
	return max(0, 1-float64(Distance(g, w))/float64(len([]rune(w))))
}

// Photo makes a clean render look photographed: turned by a few degrees,
// lit unevenly, slightly blurred, with sensor grain (seeded), and saved
// as a JPEG of quality 80.
func Photo(img image.Image, seed int64) []byte {
	rng := rand.New(rand.NewSource(seed))
	turned := imaging.Rotate(img, 2.5, color.NRGBA{235, 232, 225, 255})
	out := imaging.Blur(turned, 0.8)
	b := out.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			// Light falls off towards the bottom right.
			light := 1 - 0.3*float64(x+y)/float64(b.Dx()+b.Dy())
			o := out.PixOffset(x, y)
			for k := range 3 {
				v := float64(out.Pix[o+k])*light + rng.NormFloat64()*8
				out.Pix[o+k] = uint8(max(0, min(255, v)))
			}
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: 80}); err != nil {
		panic(err) // encoding to memory does not fail
	}
	return buf.Bytes()
}

// Render draws lines of dark text on a light background with a TrueType
// font at px pixels, with a margin of px.
func Render(ttf []byte, px float64, lines ...string) (*image.NRGBA, error) {
	f, err := opentype.Parse(ttf)
	if err != nil {
		return nil, err
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: px, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return nil, err
	}
	defer face.Close()
	m := face.Metrics()
	lineH := (m.Height * 3 / 2).Ceil()
	w := 0
	for _, l := range lines {
		w = max(w, font.MeasureString(face, l).Ceil())
	}
	margin := int(px)
	img := image.NewNRGBA(image.Rect(0, 0, w+2*margin, len(lines)*lineH+2*margin))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.NRGBA{250, 250, 245, 255}), image.Point{}, draw.Src)
	d := font.Drawer{Dst: img, Src: image.NewUniform(color.NRGBA{20, 20, 30, 255}), Face: face}
	for i, l := range lines {
		d.Dot = fixed.P(margin, margin+i*lineH+m.Ascent.Ceil())
		d.DrawString(l)
	}
	return img, nil
}
