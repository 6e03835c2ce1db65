// Package hostile builds the small files that declare huge images, for
// tests of the decoding limits: a deflate TIFF, a 16-bit PNG and a
// progressive JPEG with junk bytes, each a few hundred kilobytes that
// decode to hundreds of megabytes. They are built as streams (nothing of
// the declared size is held in memory) and are valid files: a decoder
// without limits decodes them whole.
package hostile

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"io"
)

// Zeros is a zlib stream of n zero bytes, made fast: one compressed
// mebibyte of zeros (a self-contained, byte-aligned deflate block run) is
// repeated, then the remainder, an empty final block and the checksum.
func Zeros(n int64) []byte {
	const chunk = 1 << 20
	block := func(k int64) []byte {
		var buf bytes.Buffer
		fw, _ := flate.NewWriter(&buf, flate.BestCompression) // a valid level
		fw.Write(make([]byte, k))
		fw.Flush()
		return buf.Bytes()
	}
	var out bytes.Buffer
	out.Write([]byte{0x78, 0xda})
	if full := n / chunk; full > 0 {
		out.Write(bytes.Repeat(block(chunk), int(full)))
	}
	if rest := n % chunk; rest > 0 {
		out.Write(block(rest))
	}
	out.Write([]byte{0x03, 0x00}) // final empty block
	// Adler-32 of zeros: a stays 1, b adds 1 per byte.
	binary.Write(&out, binary.BigEndian, uint32(n%65521)<<16|1)
	return out.Bytes()
}

// TIFF is a little-endian TIFF of w×h pixels of 16-bit RGBA (unassociated
// alpha), in a single deflate strip of zeros: Go's decoder inflates the
// strip whole (w×h×8 bytes) beside its w×h×8-byte image.
func TIFF(w, h int) []byte {
	strip := Zeros(int64(w) * int64(h) * 8)
	const nEntries = 11
	ifdOff := 8
	extraOff := ifdOff + 2 + nEntries*12 + 4
	bpsOff := extraOff // 4 SHORTs: bits per sample
	stripOff := bpsOff + 8
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("II")
	binary.Write(&b, le, uint16(42))
	binary.Write(&b, le, uint32(ifdOff))
	binary.Write(&b, le, uint16(nEntries))
	entry := func(tag, typ uint16, count, value uint32) {
		binary.Write(&b, le, tag)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, count)
		binary.Write(&b, le, value)
	}
	const short, long = 3, 4
	entry(256, long, 1, uint32(w))          // ImageWidth
	entry(257, long, 1, uint32(h))          // ImageLength
	entry(258, short, 4, uint32(bpsOff))    // BitsPerSample: 16,16,16,16
	entry(259, short, 1, 8)                 // Compression: deflate
	entry(262, short, 1, 2)                 // Photometric: RGB
	entry(273, long, 1, uint32(stripOff))   // StripOffsets
	entry(277, short, 1, 4)                 // SamplesPerPixel
	entry(278, long, 1, uint32(h))          // RowsPerStrip: one strip
	entry(279, long, 1, uint32(len(strip))) // StripByteCounts
	entry(284, short, 1, 1)                 // PlanarConfiguration: chunky
	entry(338, short, 1, 2)                 // ExtraSamples: unassociated alpha
	binary.Write(&b, le, uint32(0))         // no next IFD
	binary.Write(&b, le, [4]uint16{16, 16, 16, 16})
	b.Write(strip)
	return b.Bytes()
}

// PNG16 is a w×h PNG of 16-bit RGBA zeros: Go decodes it to an RGBA64
// image of w×h×8 bytes.
func PNG16(w, h int) []byte {
	// Each row: filter byte 0 ("none"), then its pixels: all zeros.
	idat := Zeros(int64(h) * int64(1+w*8))
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		io.WriteString(crc, typ)
		crc.Write(data)
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 16, 6 // 16 bits, RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", idat)
	chunk("IEND", nil)
	return b.Bytes()
}

// ProgressiveJPEG is a w×h progressive JPEG (4:2:0, as cameras write),
// its single DC scan all zeros, followed by junk bytes: libjpeg-turbo
// warns about them ("extraneous bytes before marker"), which makes Sluice
// hand the file to Go's decoder, which keeps every coefficient of a
// progressive file as int32 (w×h×6 bytes at 4:2:0).
func ProgressiveJPEG(w, h int) []byte {
	var b bytes.Buffer
	be := binary.BigEndian
	seg := func(marker byte, data []byte) {
		b.Write([]byte{0xff, marker})
		binary.Write(&b, be, uint16(len(data)+2))
		b.Write(data)
	}
	b.Write([]byte{0xff, 0xd8}) // SOI
	dqt := append([]byte{0}, bytes.Repeat([]byte{1}, 64)...)
	seg(0xdb, dqt)
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 3,
		1, 0x22, 0, // Y, 2×2
		2, 0x11, 0, // Cb
		3, 0x11, 0, // Cr
	}
	seg(0xc2, sof) // SOF2: progressive
	// A DC table holding one code, "0", for category 0 (no difference).
	dht := append([]byte{0x00, 1}, make([]byte, 15)...)
	dht = append(dht, 0)
	seg(0xc4, dht)
	sos := []byte{3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0} // DC first scan
	seg(0xda, sos)
	mcus := int64((w+15)/16) * int64((h+15)/16)
	bits := mcus * 6 // 4 Y + Cb + Cr blocks, one bit each
	b.Write(make([]byte, (bits+7)/8))
	b.WriteString("\xff\x00junk bytes, not entropy-coded data\x00\x00") // the defect
	b.Write([]byte{0xff, 0xd9})                                         // EOI
	return b.Bytes()
}
