//go:build cgo && !purego

package turbojpeg

// #cgo LDFLAGS: -lturbojpeg
// #include <stdlib.h>
// #include <turbojpeg.h>
import "C"

import (
	"fmt"
	"image"
	"sync"
	"unsafe"
)

// Available reports whether libjpeg-turbo is built in.
const Available = true

// Decode decodes body scaled by the smallest factor libjpeg-turbo offers
// (N/8) whose result is still at least minW×minH pixels (in the file's
// stored orientation; minW = minH = 0 asks for the smallest, 1/8), never
// enlarging. The result is opaque and safe to keep: its pixels live in Go
// memory. Errors wrap ErrUnsupported when another decoder should try (an
// unreadable header, CMYK, a warning such as a truncated file); other
// errors are final.
// Progressive files with more than 500 scans (a known decompression bomb)
// are refused, as libjpeg-turbo advises for untrusted input.
func Decode(body []byte, minW, minH int) (*image.NRGBA, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrUnsupported)
	}
	h := C.tjInitDecompress()
	if h == nil {
		return nil, fmt.Errorf("turbojpeg: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	defer C.tjDestroy(h)
	src := (*C.uchar)(unsafe.Pointer(&body[0]))
	var w, ht, subsamp, cs C.int
	if C.tjDecompressHeader3(h, src, C.ulong(len(body)), &w, &ht, &subsamp, &cs) != 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, C.GoString(C.tjGetErrorStr2(h)))
	}
	if cs == C.TJCS_CMYK || cs == C.TJCS_YCCK {
		return nil, fmt.Errorf("%w: CMYK", ErrUnsupported)
	}
	sw, sh := scaled(int(w), int(ht), minW, minH)
	img := image.NewNRGBA(image.Rect(0, 0, sw, sh))
	dst := (*C.uchar)(unsafe.Pointer(&img.Pix[0]))
	if C.tjDecompress2(h, src, C.ulong(len(body)), dst, C.int(sw), C.int(img.Stride), C.int(sh), C.TJPF_RGBA, C.TJFLAG_STOPONWARNING|C.TJFLAG_LIMITSCANS) != 0 {
		msg := C.GoString(C.tjGetErrorStr2(h))
		if C.tjGetErrorCode(h) == C.TJERR_WARNING {
			return nil, fmt.Errorf("%w: %s", ErrUnsupported, msg)
		}
		return nil, fmt.Errorf("libjpeg-turbo: %s", msg)
	}
	return img, nil
}

// scaled picks the output size: the smallest scaling factor ≤ 1 that keeps
// both sides at least the asked minimum.
func scaled(w, h, minW, minH int) (int, int) {
	bw, bh := w, h
	for _, f := range scalingFactors() {
		num, den := f[0], f[1]
		fw, fh := (w*num+den-1)/den, (h*num+den-1)/den
		if fw >= minW && fh >= minH && fw*fh < bw*bh {
			bw, bh = fw, fh
		}
	}
	return bw, bh
}

// scalingFactors are libjpeg-turbo's decoding scales up to 1 (num, den),
// read from the library once.
var scalingFactors = sync.OnceValue(func() [][2]int {
	var n C.int
	sf := C.tjGetScalingFactors(&n)
	var out [][2]int
	for _, f := range unsafe.Slice(sf, int(n)) {
		if f.num <= f.denom {
			out = append(out, [2]int{int(f.num), int(f.denom)})
		}
	}
	return out
})

// Encode writes img as a baseline JPEG at quality (1-100) with 4:2:0
// chroma subsampling, libjpeg's default. Alpha is ignored.
func Encode(img *image.NRGBA, quality int) ([]byte, error) {
	b := img.Bounds()
	if b.Empty() {
		return nil, fmt.Errorf("turbojpeg: empty image")
	}
	h := C.tjInitCompress()
	if h == nil {
		return nil, fmt.Errorf("turbojpeg: %s", C.GoString(C.tjGetErrorStr2(nil)))
	}
	defer C.tjDestroy(h)
	pix := img.Pix[img.PixOffset(b.Min.X, b.Min.Y):]
	var out *C.uchar
	var size C.ulong
	if C.tjCompress2(h, (*C.uchar)(unsafe.Pointer(&pix[0])), C.int(b.Dx()), C.int(img.Stride), C.int(b.Dy()),
		C.TJPF_RGBA, &out, &size, C.TJSAMP_420, C.int(quality), 0) != 0 {
		return nil, fmt.Errorf("turbojpeg: encode: %s", C.GoString(C.tjGetErrorStr2(h)))
	}
	defer C.tjFree(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(size)), nil
}

// ScaledSize is the size Decode gives a w×h JPEG for the asked minimum.
func ScaledSize(w, h, minW, minH int) (int, int) { return scaled(w, h, minW, minH) }
