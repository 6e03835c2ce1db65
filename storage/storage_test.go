package storage_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/storage"
	"github.com/sluicehq/sluice/storage/storagetest"
)

func TestMemConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store { return storage.NewStore(storage.NewMem()) })
}

func TestFSConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		d, err := storage.NewFS(t.TempDir(), 50*time.Millisecond)
		require.NoError(t, err)
		return storage.NewStore(d)
	})
}

func TestOpenByURL(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(t.Context(), "fs://"+dir+"?settle=10ms")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = storage.Open(t.Context(), "nope://x")
	require.ErrorContains(t, err, `unknown scheme "nope"`)
	_, err = storage.Open(t.Context(), "fs://"+dir+"?settle=-1s")
	require.ErrorContains(t, err, "settle must be a positive duration")
}
