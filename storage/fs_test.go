package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/storage"
)

// TestFSWatchIgnoresPartialFilesAndSeesRenames drives the folder the way
// other programs do: partial names, renames into place, new sub-folders.
func TestFSWatchIgnoresPartialFilesAndSeesRenames(t *testing.T) {
	root := t.TempDir()
	d, err := storage.NewFS(root, 30*time.Millisecond)
	require.NoError(t, err)
	s := storage.NewStore(d)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	require.NoError(t, s.EnsureBucket(ctx, "drop"))
	dir := filepath.Join(root, "drop")

	events := make(chan storage.ObjectEvent, 32)
	go func() { _ = s.Watch(ctx, "drop", events) }()
	// A marker object tells when the watch is live.
	_, err = s.PutBytes(ctx, "drop", "marker", []byte("m"), storage.PutOptions{})
	require.NoError(t, err)
	next := func() storage.ObjectEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return storage.ObjectEvent{}
	}
	require.Equal(t, "marker", next().Key)

	for _, name := range []string{".hidden.jpg", "upload.jpg.part", "download.crdownload", "edit.txt~", "x.tmp"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o644))
	}
	require.NoError(t, os.Rename(filepath.Join(dir, "upload.jpg.part"), filepath.Join(dir, "upload.jpg")))
	ev := next()
	assert.Equal(t, "upload.jpg", ev.Key, "partial names are ignored; the rename is the object")
	assert.Equal(t, storage.EventCreatedPut, ev.Name)
	assert.EqualValues(t, 7, ev.Size)

	// A folder created with files already in it.
	tmp := filepath.Join(root, "staging")
	require.NoError(t, os.MkdirAll(filepath.Join(tmp, "2026", "11"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "2026", "11", "a.jpg"), []byte("a"), 0o644))
	require.NoError(t, os.Rename(filepath.Join(tmp, "2026"), filepath.Join(dir, "2026")))
	assert.Equal(t, "2026/11/a.jpg", next().Key)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "2026", "11", "b.jpg"), []byte("b"), 0o644))
	assert.Equal(t, "2026/11/b.jpg", next().Key, "the new folder is watched too")

	// The listing agrees: partial files are not objects.
	var keys []string
	require.NoError(t, s.List(ctx, "drop", "", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }))
	assert.Equal(t, []string{"2026/11/a.jpg", "2026/11/b.jpg", "marker", "upload.jpg"}, keys)
	_, err = s.PutBytes(ctx, "drop", "sneaky.part", []byte("x"), storage.PutOptions{})
	assert.ErrorIs(t, err, storage.ErrInvalidKey)
}
