package image_test

import (
	"os"
	"sort"
	"testing"

	"github.com/sluicehq/sluice/internal/phototest"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// FuzzThumbnail feeds arbitrary bytes through decode → thumbnail →
// encode. Every input must end in a thumbnail or a permanent error: no
// panic, no transient error, and no allocation beyond the 4 MP limit set
// here (the fuzzer's memory stays bounded). Seeds: valid images of each
// format, EXIF-rotated JPEGs, truncated and corrupt files, hostile headers.
// Run: go test ./nodes/image -run '^$' -fuzz FuzzThumbnail -fuzztime 1m
func FuzzThumbnail(f *testing.F) {
	jpg := jpegOf(f, halves(64, 48, red, blue))
	png := encodePNG(f, halves(30, 20, red, blue))
	for _, seed := range [][]byte{
		jpg, png, withOrientation(jpg, 6), withOrientation(jpg, 9),
		jpg[:len(jpg)/2], png[:len(png)-12], phototest.HugePNG(50000, 50000), phototest.HugePNG(0, 10),
		append(append([]byte{}, jpg[:200]...), make([]byte, 100)...),
		nil, []byte("GIF89a"), []byte("\xff\xd8\xff\xe1\x00\x02"),
	} {
		f.Add(seed)
	}
	if os.Getenv("SLUICE_PHOTOS") != "" { // the corpus's smallest real photo
		photos := phototest.Photos(f)
		sort.Slice(photos, func(i, j int) bool { return fileSize(photos[i]) < fileSize(photos[j]) })
		if b, err := os.ReadFile(photos[0]); err == nil {
			f.Add(b)
			f.Add(withOrientation(b, 8))
		}
	}
	n, err := nodestest.Build("image.thumbnail", `{width: 32, height: 32, max_pixels: 4000000}`, nodes.Deps{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env := envOf(body)
		err := n.Process(t.Context(), env)
		if err == nil {
			_, err = env.Body(t.Context())
		}
		if err != nil && !nodes.IsPermanent(err) {
			t.Fatalf("a bad input must be a permanent error, got %v", err)
		}
	})
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 1 << 62
	}
	return fi.Size()
}
