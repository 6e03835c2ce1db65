// Package phototest gives tests the corpus of real photographs that
// scripts/corpus.sh fetches (SLUICE_PHOTOS names its folder). Without it a
// test is skipped, except under CI=true, where a missing corpus fails.
package phototest

import (
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
