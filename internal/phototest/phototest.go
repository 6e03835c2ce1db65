// Package phototest gives tests the corpus of real photographs that
// scripts/corpus.sh fetches (SLUICE_PHOTOS names its folder). Without it a
// test is skipped, except under CI=true, where a missing corpus fails.
package phototest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// Dir is the corpus folder, or skips (fails under CI) when there is none.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SLUICE_PHOTOS")
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("SLUICE_PHOTOS is not set: run the tests with ./scripts/test.sh, which fetches the photo corpus")
		}
		t.Skip("no photo corpus: set SLUICE_PHOTOS=$(./scripts/corpus.sh)")
	}
	return dir
}

// Photos lists the corpus's JPEG files, sorted by name.
func Photos(t testing.TB) []string {
	t.Helper()
	dir := Dir(t)
	var out []string
	for _, pat := range []string{"*.jpg", "*.jpeg", "*.JPG"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		out = append(out, m...)
	}
	if len(out) == 0 {
		t.Fatalf("no photos in %s", dir)
	}
	sort.Strings(out)
	return out
}

// WithOrientation returns a JPEG with an EXIF segment holding orientation
// o (1-8, or anything for hostile tests) inserted right after its SOI
// marker, as cameras write it.
func WithOrientation(jpg []byte, o uint16) []byte {
	var tiff bytes.Buffer
	tiff.WriteString("MM\x00\x2a")
	binary.Write(&tiff, binary.BigEndian, uint32(8)) // IFD0 offset
	binary.Write(&tiff, binary.BigEndian, uint16(1)) // one entry
	binary.Write(&tiff, binary.BigEndian, []uint16{0x0112, 3})
	binary.Write(&tiff, binary.BigEndian, uint32(1))
	binary.Write(&tiff, binary.BigEndian, []uint16{o, 0})
	binary.Write(&tiff, binary.BigEndian, uint32(0)) // no next IFD
	payload := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

// HugePNG is a valid PNG header claiming w×h pixels, with no pixel data:
// a decompression bomb's calling card, a few dozen bytes long.
func HugePNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}
