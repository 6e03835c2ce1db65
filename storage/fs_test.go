package storage_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"syscall"
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

// hostileBucket makes a folder driver whose bucket "drop" holds what a
// hostile user can drop into a shared folder: links to a file outside and
// to /dev/zero, a link to a folder outside, and a named pipe.
func hostileBucket(t *testing.T) (s *storage.Store, root, outside string) {
	t.Helper()
	root, outside = t.TempDir(), t.TempDir()
	d, err := storage.NewFS(root, 30*time.Millisecond)
	require.NoError(t, err)
	s = storage.NewStore(d)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.EnsureBucket(t.Context(), "drop"))
	dir := filepath.Join(root, "drop")
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("secret"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "secret.txt")))
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, "zero.png")))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "sub")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "pipe.png"), 0o644))
	ln, err := net.Listen("unix", filepath.Join(dir, "sock.png"))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return s, root, outside
}

func TestFSRefusesLinksPipesAndWritesThroughLinks(t *testing.T) {
	s, root, outside := hostileBucket(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, key := range []string{"secret.txt", "zero.png", "pipe.png", "sock.png", "sub/secret.txt", "sub"} {
		_, _, err := s.ReadAll(ctx, "drop", key, 0)
		assert.ErrorIs(t, err, storage.ErrNotFound, key)
		_, err = s.Stat(ctx, "drop", key)
		assert.ErrorIs(t, err, storage.ErrNotFound, key)
	}
	_, err := s.PutBytes(ctx, "drop", "sub/x", []byte("escape"), storage.PutOptions{})
	require.ErrorIs(t, err, storage.ErrInvalidKey)
	assert.Contains(t, err.Error(), "symbolic link")
	assert.NoFileExists(t, filepath.Join(outside, "x"))
	require.NoError(t, s.Delete(ctx, "drop", "sub/secret.txt"))
	assert.FileExists(t, filepath.Join(outside, "secret.txt"), "delete must not reach through a link")

	// Writing over a link replaces the link, it does not write through it.
	_, err = s.PutBytes(ctx, "drop", "secret.txt", []byte("mine"), storage.PutOptions{})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(outside, "secret.txt"))
	require.NoError(t, err)
	assert.Equal(t, "secret", string(b))
	got, _, err := s.ReadAll(ctx, "drop", "secret.txt", 0)
	require.NoError(t, err)
	assert.Equal(t, "mine", string(got))

	var keys []string
	require.NoError(t, s.List(ctx, "drop", "", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }))
	assert.Equal(t, []string{"secret.txt"}, keys, "only regular files are listed")
	// Prefixes do not lead through a link or out of the bucket either.
	require.NoError(t, os.MkdirAll(filepath.Join(outside, "deeper"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "deeper", "f"), []byte("f"), 0o644))
	_, err = s.PutBytes(ctx, "other", "x", nil, storage.PutOptions{})
	require.Error(t, err)
	require.NoError(t, s.EnsureBucket(ctx, "other"))
	_, err = s.PutBytes(ctx, "other", "private", []byte("p"), storage.PutOptions{})
	require.NoError(t, err)
	for _, prefix := range []string{"sub/", "sub/deeper/", "../", "../other/", "./", "//"} {
		keys = nil
		require.NoError(t, s.List(ctx, "drop", prefix, func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }))
		assert.Empty(t, keys, "prefix %q", prefix)
	}
	_ = root
}

func TestFSWatchSkipsLinksAndPipes(t *testing.T) {
	s, root, _ := hostileBucket(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events := make(chan storage.ObjectEvent, 32)
	go func() { _ = s.Watch(ctx, "drop", events) }()
	dir := filepath.Join(root, "drop")
	// Dropped while watching, too.
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, "zero2.png")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "pipe2.png"), 0o644))
	_, err := s.PutBytes(ctx, "drop", "real.png", []byte("png"), storage.PutOptions{})
	require.NoError(t, err)
	next := func() string {
		select {
		case ev := <-events:
			return ev.Key
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return ""
	}
	assert.Equal(t, "real.png", next(), "links and pipes are not objects")
	_, err = s.PutBytes(ctx, "drop", "zzz.png", []byte("png"), storage.PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, "zzz.png", next(), "links and pipes are not objects")
}

func TestFSRemovesStaleTemporaryFiles(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "out", "a")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	old := time.Now().Add(-2 * storage.StaleTempAge)
	for _, name := range []string{".sluice-tmp-old", ".sluice-tmp-new", ".other-tmp-old"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644))
	}
	require.NoError(t, os.Chtimes(filepath.Join(dir, ".sluice-tmp-old"), old, old))
	require.NoError(t, os.Chtimes(filepath.Join(dir, ".other-tmp-old"), old, old))
	d, err := storage.NewFS(root, 0)
	require.NoError(t, err)
	defer d.Close()
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, ".sluice-tmp-old"))
		return os.IsNotExist(err)
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, d.Close()) // the sweep has ended
	assert.FileExists(t, filepath.Join(dir, ".sluice-tmp-new"), "a recent temporary file may be a write in progress")
	assert.FileExists(t, filepath.Join(dir, ".other-tmp-old"), "only Sluice's own temporary names are removed")
}

// The operator may make a bucket folder a link to another disk: the
// bucket works in full (links below it are still refused).
func TestFSBucketFolderMayBeALink(t *testing.T) {
	root, elsewhere := t.TempDir(), t.TempDir()
	require.NoError(t, os.Symlink(elsewhere, filepath.Join(root, "linked")))
	d, err := storage.NewFS(root, 30*time.Millisecond)
	require.NoError(t, err)
	s := storage.NewStore(d)
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = s.PutBytes(ctx, "linked", "before/a.txt", []byte("a"), storage.PutOptions{})
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(elsewhere, "before", "a.txt"))
	events := make(chan storage.ObjectEvent, 8)
	go func() { _ = s.Watch(ctx, "linked", events) }()
	next := func() string {
		select {
		case ev := <-events:
			return ev.Key
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return ""
	}
	assert.Equal(t, "before/a.txt", next(), "the start-up scan enters the linked folder")
	_, err = s.PutBytes(ctx, "linked", "after.txt", []byte("b"), storage.PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, "after.txt", next())
	var keys []string
	require.NoError(t, s.List(ctx, "linked", "", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }))
	assert.Equal(t, []string{"after.txt", "before/a.txt"}, keys)
}
