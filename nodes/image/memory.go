package image

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"runtime"
	"sync"

	"github.com/dustin/go-humanize"
	"golang.org/x/sync/semaphore"
)

// Decoding memory. Pixel and byte limits alone do not bound it: a 0.8 MB
// TIFF declaring 10000×10000 16-bit pixels takes gigabytes to decode. So
// before decoding, the memory a decode takes at its peak is estimated from
// the header (bytes per pixel of the decoder's output × pixels, plus what
// the decoder keeps meanwhile: TIFF strips inflated whole, a progressive
// JPEG's coefficients, PNG's interlace passes; plus the body and one
// 4-byte-per-pixel copy a step makes). An image whose estimate is over the
// node's max_memory is refused (permanent); the others take their estimate
// from a process-wide budget, waiting while it is spent, so concurrent
// decodes cannot multiply memory.
const (
	// DefaultMaxMemory is the default per-image limit on the estimate.
	DefaultMaxMemory = 640 << 20
	// DefaultDecodeBudget is the default process-wide budget.
	DefaultDecodeBudget = 1 << 30
	// BudgetEnv names the environment variable that sets the process-wide
	// budget, in bytes or with a unit ("2GiB", "512MiB").
	BudgetEnv = "SLUICE_DECODE_BUDGET"
)

var budget = sync.OnceValues(func() (*decodeBudget, error) {
	size := int64(DefaultDecodeBudget)
	if s := os.Getenv(BudgetEnv); s != "" {
		n, err := humanize.ParseBytes(s)
		if err != nil || n == 0 || n > 1<<50 {
			return nil, fmt.Errorf("%s=%q: want a size such as 1GiB or 536870912", BudgetEnv, s)
		}
		size = int64(n)
	}
	return &decodeBudget{size: size, sem: semaphore.NewWeighted(size)}, nil
})

type decodeBudget struct {
	size int64
	sem  *semaphore.Weighted
}

// DecodeBudget returns the process-wide decoding budget in bytes, or the
// error of a malformed SLUICE_DECODE_BUDGET.
func DecodeBudget() (int64, error) {
	b, err := budget()
	if err != nil {
		return 0, err
	}
	return b.size, nil
}

// errWait marks a failure to get decoding memory before the step's
// context ended: transient, the run may be retried.
var errWait = errors.New("waiting for decoding memory")

// reserve takes n bytes from the budget, waiting for ctx; the returned
// function gives them back (once).
func reserve(ctx context.Context, n int64, what string) (func(), error) {
	b, err := budget()
	if err != nil {
		return nil, err
	}
	if n > b.size {
		return nil, fmt.Errorf("%s needs about %s to decode, over the whole decoding budget of %s (%s): refused before decoding",
			what, size(n), size(b.size), BudgetEnv)
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, fmt.Errorf("%w (%s for %s, of %s): %w", errWait, size(n), what, size(b.size), err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if n >= collectAbove {
				// The decoded image is garbage now, or soon: collect it
				// before the next decode allocates beside it. Without
				// this, Go's collector, paced for a small heap, may still
				// be marking when the waiter's decode has allocated its
				// own: peak RSS then counts both.
				runtime.GC()
			}
			b.sem.Release(n)
		})
	}, nil
}

// collectAbove is the reservation size above which giving it back
// collects garbage first (a few milliseconds against a decode of
// hundreds of megabytes).
const collectAbove = 128 << 20

func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// bytesPerPixel is what the Go decoders' output takes per pixel.
func bytesPerPixel(m color.Model) float64 {
	switch m {
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel:
		return 4
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.YCbCrModel:
		return 3 // 4:4:4 at most
	case color.NYCbCrAModel:
		return 4
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 8
}

// goEstimate is the peak memory of decoding body with the Go decoders
// (image.Decode), and of one full-size copy a step makes.
func goEstimate(body []byte, format string, cfg image.Config) int64 {
	px := float64(cfg.Width) * float64(cfg.Height)
	out := bytesPerPixel(cfg.ColorModel)
	var per float64 // bytes per pixel besides the output
	switch format {
	case "jpeg":
		j := jpegHeader(body)
		if j.comps > 0 {
			out = j.samples
		}
		if j.progressive {
			// Go's decoder keeps every coefficient as an int32 until the
			// last scan: 4 bytes × 64 per 8×8 block of each component.
			per += 4 * j.samples
		}
	case "png":
		if len(body) > 28 && body[28] == 1 {
			per += out // interlaced: passes decoded apart, then merged
		}
	case "tiff":
		// Each strip or tile is inflated whole into a buffer grown by
		// doubling: up to about 4× its size, counting the smaller copies
		// left behind for the collector.
		block := tiffBlockPixels(body, cfg)
		return slack(px*(out+4)+4*float64(block)*out) + int64(len(body))
	case "gif":
		per += out // the next frame decoded while the last is kept
	case "webp":
		per += 4 // lossless decodes to ARGB words, then to NRGBA
	}
	return slack(px*(out+per+4)) + int64(len(body))
}

// slack adds to an estimate what measurements showed besides the big
// buffers: row buffers, a resize's intermediate image, garbage not yet
// collected (5% and 8 MiB).
func slack(n float64) int64 { return int64(n*1.05) + 8<<20 }

// turboEstimate is the peak memory of decoding a JPEG with libjpeg-turbo
// to w×h pixels (scaled), turning it upright when turned, and of one copy
// a step makes at that size.
func turboEstimate(body []byte, cfg image.Config, w, h int, turned bool) int64 {
	j := jpegHeader(body)
	full := float64(cfg.Width) * float64(cfg.Height)
	per := 4.0 + 4 // output, one copy
	if turned {
		per += 4
	}
	n := float64(w) * float64(h) * per
	if j.progressive {
		n += 2 * j.samples * full // libjpeg keeps the coefficients as int16
	} else {
		n += 64 * float64(cfg.Width) * max(j.comps, 1) // a few rows of MCUs
	}
	return slack(n) + int64(len(body))
}

type jpegInfo struct {
	progressive bool
	comps       float64
	samples     float64 // samples per pixel, subsampling counted (4:2:0 = 1.5)
}

// jpegHeader reads a JPEG's frame header (SOFn): progressive or not, its
// components and their sampling. Zero when not found.
func jpegHeader(b []byte) jpegInfo {
	if len(b) < 4 || b[0] != 0xff || b[1] != 0xd8 {
		return jpegInfo{}
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xff {
			return jpegInfo{}
		}
		m := b[i+1]
		if m == 0xff { // fill byte
			i++
			continue
		}
		if m == 0xd8 || m == 0x01 || m >= 0xd0 && m <= 0xd7 {
			i += 2
			continue
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		seg := b[i+4 : min(len(b), i+2+n)]
		isSOF := m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc
		if isSOF {
			if len(seg) < 6 {
				return jpegInfo{}
			}
			j := jpegInfo{progressive: m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce}
			nc := int(seg[5])
			var hmax, vmax float64 = 1, 1
			type comp struct{ h, v float64 }
			var cs []comp
			for k := 0; k < nc && 6+3*k+1 < len(seg); k++ {
				hv := seg[6+3*k+1]
				c := comp{float64(max(hv>>4, 1)), float64(max(hv&15, 1))}
				hmax, vmax = max(hmax, c.h), max(vmax, c.v)
				cs = append(cs, c)
			}
			for _, c := range cs {
				j.samples += c.h * c.v / (hmax * vmax)
			}
			j.comps = float64(len(cs))
			if j.comps == 0 {
				return jpegInfo{}
			}
			return j
		}
		if m == 0xda || n < 2 { // scan data before any frame header
			return jpegInfo{}
		}
		i += 2 + n
	}
	return jpegInfo{}
}

// tiffBlockPixels is the pixel count of a TIFF's largest strip or tile,
// read from its first IFD; the whole image when unreadable.
func tiffBlockPixels(b []byte, cfg image.Config) int64 {
	whole := int64(cfg.Width) * int64(cfg.Height)
	if len(b) < 8 {
		return whole
	}
	var bo binary.ByteOrder
	switch string(b[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return whole
	}
	off := int64(bo.Uint32(b[4:]))
	if off+2 > int64(len(b)) {
		return whole
	}
	n := int64(bo.Uint16(b[off:]))
	var rows, tileW, tileH int64
	for k := range n {
		e := off + 2 + 12*k
		if e+12 > int64(len(b)) {
			break
		}
		tag, typ := bo.Uint16(b[e:]), bo.Uint16(b[e+2:])
		var v int64
		switch typ {
		case 3: // SHORT
			v = int64(bo.Uint16(b[e+8:]))
		case 4: // LONG
			v = int64(bo.Uint32(b[e+8:]))
		default:
			continue
		}
		switch tag {
		case 278:
			rows = v
		case 322:
			tileW = v
		case 323:
			tileH = v
		}
	}
	switch {
	case tileW > 0 && tileH > 0:
		return tileW * tileH
	case rows > 0 && rows < int64(cfg.Height):
		return rows * int64(cfg.Width)
	}
	return whole
}
