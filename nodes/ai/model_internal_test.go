package ai

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestModelsShareAPool: opening the same model twice shares its sessions;
// the pool grows to the larger size and lives until its last user closes.
func TestModelsShareAPool(t *testing.T) {
	if err := Load(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir, _ := Dir("")
	data, err := os.ReadFile(filepath.Join(dir, "ppocr", "cls.onnx"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	a, err := Open("a", data, Options{Sessions: 1})
	require.NoError(t, err)
	b, err := Open("b", data, Options{Sessions: 3})
	require.NoError(t, err)
	c, err := Open("c", data, Options{Sessions: 1, Threads: 2})
	require.NoError(t, err)
	assert.Same(t, a.p, b.p)
	assert.NotSame(t, a.p, c.p, "other threads, other sessions")
	assert.Len(t, a.p.all, 3)

	in := Tensor{Shape: []int64{1, 3, 48, 192}, Data: make([]float32, 3*48*192)}
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "twice is harmless")
	_, _, err = b.Run(t.Context(), []Tensor{in})
	require.NoError(t, err, "b still runs after a closed")
	require.NoError(t, b.Close())
	require.NoError(t, c.Close())
	poolsMu.Lock()
	defer poolsMu.Unlock()
	assert.Empty(t, pools)
}
