package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

func init() { Register("fs", openFS) }

// FS stores each bucket as a folder under a root and each object as a file,
// keys' "/" becoming sub-folders. Writes go to a hidden temporary file in
// the target folder, are synced, then renamed into place, so readers and
// watchers never see a partial object.
//
// Names that mark files as partial are not objects: a base name starting
// with "." (hidden: rsync, editors and Sluice's own temporary files) or
// ending in ".tmp", ".part", ".partial", ".crdownload" or "~". Keys with
// such a segment are refused by Put.
//
// Only regular files beneath a bucket folder are objects: symbolic links,
// named pipes, devices and sockets are not listed, watched, read or
// written through, and no link below the bucket folder is followed (see
// fs_beneath_unix.go). The bucket folders and the root may themselves be
// links, set up by the operator.
//
// Temporary files a killed writer left behind (named ".sluice-tmp-*",
// unchanged for StaleTempAge) are removed in the background after open.
type FS struct {
	root   string
	settle time.Duration

	stopSweep context.CancelFunc
	sweeping  sync.WaitGroup
}

// tempPrefix starts the names of the folder driver's temporary files.
const tempPrefix = ".sluice-tmp-"

// StaleTempAge is how long a temporary file must have been left unchanged
// before the folder driver removes it as the leftover of a killed writer.
const StaleTempAge = time.Hour

// openFS accepts fs://DIR?settle=200ms&stale_temp=1h. settle is how long a
// file must stay unchanged before the watcher reports it complete;
// stale_temp how old a leftover temporary file must be to be removed.
func openFS(_ context.Context, u *url.URL) (Driver, error) {
	dir := URLPath(u)
	if dir == "" {
		return nil, errors.New("fs url needs a folder, e.g. fs://.sluice/buckets")
	}
	settle := 200 * time.Millisecond
	if s := u.Query().Get("settle"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("settle must be a positive duration such as 200ms, not %q", s)
		}
		settle = d
	}
	stale := StaleTempAge
	if s := u.Query().Get("stale_temp"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("stale_temp must be a positive duration such as 1h, not %q", s)
		}
		stale = d
	}
	return newFS(dir, settle, stale)
}

// NewFS returns a folder driver rooted at dir, creating dir if needed.
func NewFS(dir string, settle time.Duration) (*FS, error) { return newFS(dir, settle, StaleTempAge) }

func newFS(dir string, settle, stale time.Duration) (*FS, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create storage folder: %w", err)
	}
	if settle <= 0 {
		settle = 200 * time.Millisecond
	}
	ctx, stop := context.WithCancel(context.Background())
	f := &FS{root: abs, settle: settle, stopSweep: stop}
	f.sweeping.Go(func() { f.sweepTemps(ctx, stale) })
	return f, nil
}

// sweepTemps removes the driver's temporary files under the root that
// have not changed for olderThan: what a writer killed mid-write left.
// Links are not followed; other files are never touched.
func (f *FS) sweepTemps(ctx context.Context, olderThan time.Duration) {
	_ = filepath.WalkDir(walkRoot(f.root), func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil || d.IsDir() || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		if st, err := d.Info(); err == nil && time.Since(st.ModTime()) > olderThan {
			if os.Remove(p) == nil {
				slog.Info("removed a stale temporary file left by an interrupted write", "file", p, "modified", st.ModTime().UTC())
			}
		}
		return nil
	})
}

// Root returns the folder holding the buckets.
func (f *FS) Root() string { return f.root }

func (f *FS) bucketDir(bucket string) string { return filepath.Join(f.root, bucket) }

func (f *FS) needBucket(bucket string) error {
	st, err := os.Stat(f.bucketDir(bucket))
	if err != nil || !st.IsDir() {
		return fmt.Errorf("%s: %w", bucket, ErrBucketNotFound)
	}
	return nil
}

func (f *FS) info(bucket, key string, st fs.FileInfo) ObjectInfo {
	return ObjectInfo{
		Bucket: bucket, Key: key, Size: st.Size(),
		ETag:        fmt.Sprintf("%x-%x", st.ModTime().UnixNano(), st.Size()),
		ContentType: contentType(key, ""),
		Modified:    st.ModTime().UTC(),
	}
}

func (f *FS) NewReader(_ context.Context, bucket, key string) (io.ReadCloser, ObjectInfo, error) {
	if err := f.needBucket(bucket); err != nil {
		return nil, ObjectInfo{}, err
	}
	if isPartial(key) {
		return nil, ObjectInfo{}, fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	file, err := openObject(f.bucketDir(bucket), key)
	if err != nil {
		return nil, ObjectInfo{}, mapFSError(bucket, key, err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, ObjectInfo{}, mapFSError(bucket, key, err)
	}
	return file, f.info(bucket, key, st), nil
}

func (f *FS) Put(ctx context.Context, bucket, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	if isPartial(key) {
		return ObjectInfo{}, fmt.Errorf("%w %q: the folder driver reserves names that are hidden or end in .tmp, .part, .partial, .crdownload or ~ for partial files", ErrInvalidKey, key)
	}
	if err := f.needBucket(bucket); err != nil {
		return ObjectInfo{}, err
	}
	err := createObject(f.bucketDir(bucket), key, func(tmp *os.File) error {
		if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
			return err
		}
		return setMeta(tmp, opts.Metadata)
	})
	if errors.Is(err, errLinkOnPath) {
		return ObjectInfo{}, fmt.Errorf("%w %q: %v; the folder driver writes only beneath its bucket folder, never through a link", ErrInvalidKey, key, err)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return f.Stat(ctx, bucket, key)
}

func (f *FS) Stat(_ context.Context, bucket, key string) (ObjectInfo, error) {
	if err := f.needBucket(bucket); err != nil {
		return ObjectInfo{}, err
	}
	if isPartial(key) {
		return ObjectInfo{}, fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	st, err := statObject(f.bucketDir(bucket), key)
	if err != nil {
		return ObjectInfo{}, mapFSError(bucket, key, err)
	}
	return f.info(bucket, key, st), nil
}

func (f *FS) Delete(_ context.Context, bucket, key string) error {
	if err := f.needBucket(bucket); err != nil {
		return err
	}
	if err := removeObject(f.bucketDir(bucket), key); err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (f *FS) List(ctx context.Context, bucket, prefix string, fn func(ObjectInfo) error) error {
	if err := f.needBucket(bucket); err != nil {
		return err
	}
	infos, err := f.scan(ctx, bucket, prefix)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// scan returns the complete objects under prefix, sorted by key.
func (f *FS) scan(ctx context.Context, bucket, prefix string) ([]ObjectInfo, error) {
	base := f.bucketDir(bucket)
	start := base
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		// The folders the prefix names must be folders, not links:
		// WalkDir would follow a link in the middle of its start path.
		dir, err := openDir(base, strings.Split(prefix[:i], "/"), false)
		if err != nil {
			return nil, nil // nothing of the bucket's there
		}
		closeDir(dir)
		start = filepath.Join(base, filepath.FromSlash(prefix[:i]))
	}
	var infos []ObjectInfo
	err := filepath.WalkDir(walkRoot(start), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != base && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) || isPartial(key) {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		infos = append(infos, f.info(bucket, key, st))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	return infos, nil
}

func (f *FS) EnsureBucket(_ context.Context, bucket string) error {
	if err := os.MkdirAll(f.bucketDir(bucket), 0o755); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

// Close stops the temporary-file sweep.
func (f *FS) Close() error {
	f.stopSweep()
	f.sweeping.Wait()
	return nil
}

// errNotRegular and errLinkOnPath are what the folder driver finds instead
// of an object: something that is not a regular file (a link, a named
// pipe, a device, a socket, a folder), or a link where a folder should be.
var (
	errNotRegular = errors.New("not a regular file")
	errLinkOnPath = errors.New("a folder on the path is a symbolic link or not a folder")
)

func mapFSError(bucket, key string, err error) error {
	if errors.Is(err, errNotRegular) || errors.Is(err, errLinkOnPath) {
		return fmt.Errorf("%s/%s: %w (%v: only regular files beneath the bucket folder are objects)", bucket, key, ErrNotFound, err)
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not a directory") {
		return fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	return fmt.Errorf("%s/%s: %w", bucket, key, err)
}

// walkRoot makes WalkDir enter dir even when dir is a link (the operator
// may link the root or a bucket folder elsewhere): a trailing separator
// makes the kernel resolve it. Links below are still not followed.
func walkRoot(dir string) string {
	return strings.TrimSuffix(dir, string(filepath.Separator)) + string(filepath.Separator)
}

// isPartial reports whether any segment of key names a partial file.
func isPartial(key string) bool {
	for _, seg := range strings.Split(key, "/") {
		if strings.HasPrefix(seg, ".") || strings.HasSuffix(seg, "~") {
			return true
		}
		for _, suf := range []string{".tmp", ".part", ".partial", ".crdownload"} {
			if strings.HasSuffix(strings.ToLower(seg), suf) {
				return true
			}
		}
	}
	return false
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Watch implements Watcher with fsnotify. A file is reported once it is
// complete: unchanged (size and modification time) for the settle period,
// which covers files being copied in; files renamed in (the fastest and
// safest way to drop a file) are reported after one settle period too.
// Each (key, etag) is reported once per Watch call.
func (f *FS) Watch(ctx context.Context, bucket string, events chan<- ObjectEvent) error {
	if err := f.needBucket(bucket); err != nil {
		return err
	}
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, err)
	}
	defer w.Close()
	fw := &fsWatch{
		f: f, bucket: bucket, base: f.bucketDir(bucket), w: w, events: events,
		pending: map[string]pendingFile{}, reported: map[string]string{},
	}
	// Watch first, then scan: a file written in between is seen twice and
	// reported once, never missed.
	if err := fw.addTree(fw.base, false); err != nil {
		return err
	}
	existing, err := f.scan(ctx, bucket, "")
	if err != nil {
		return err
	}
	for _, info := range existing {
		if time.Since(info.Modified) < f.settle {
			fw.touch(info.Key)
			fw.pending[info.Key] = pendingFile{seen: time.Now(), size: -1, existing: true}
			continue
		}
		if err := fw.report(ctx, EventCreatedExisting, info, readMeta(fw.base, info.Key)); err != nil {
			return err
		}
	}
	return fw.loop(ctx)
}

type pendingFile struct {
	size     int64
	modTime  time.Time
	seen     time.Time
	existing bool // found by the start-up scan, still settling
}

type fsWatch struct {
	f        *FS
	bucket   string
	base     string
	w        *fsnotify.Watcher
	events   chan<- ObjectEvent
	pending  map[string]pendingFile // key → last observed state
	reported map[string]string      // key → etag last reported
}

// addTree watches dir and its sub-folders. With touchFiles, files already
// inside are marked pending: a folder that appears while watching may have
// been filled before its watch was added.
func (fw *fsWatch) addTree(dir string, touchFiles bool) error {
	return filepath.WalkDir(walkRoot(dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			if !touchFiles {
				return nil
			}
			if rel, rerr := filepath.Rel(fw.base, p); rerr == nil {
				fw.touch(filepath.ToSlash(rel))
			}
			return nil
		}
		if p != fw.base && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if err := fw.w.Add(p); err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		return nil
	})
}

// touch marks key as changed now; it is reported once it settles.
func (fw *fsWatch) touch(key string) {
	if isPartial(key) {
		return
	}
	fw.pending[key] = pendingFile{seen: time.Now(), size: -1}
}

func (fw *fsWatch) loop(ctx context.Context) error {
	tick := time.NewTicker(max(fw.f.settle/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err, ok := <-fw.w.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("watch %s: %w", fw.bucket, err)
		case ev, ok := <-fw.w.Events:
			if !ok {
				return nil
			}
			if err := fw.handle(ctx, ev); err != nil {
				return err
			}
		case <-tick.C:
			if err := fw.flush(ctx); err != nil {
				return err
			}
		}
	}
}

func (fw *fsWatch) handle(ctx context.Context, ev fsnotify.Event) error {
	rel, err := filepath.Rel(fw.base, ev.Name)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil
	}
	key := filepath.ToSlash(rel)
	switch {
	case ev.Has(fsnotify.Create):
		st, err := os.Lstat(ev.Name)
		if err != nil {
			return nil
		}
		if st.IsDir() {
			if !strings.HasPrefix(filepath.Base(ev.Name), ".") {
				return fw.addTree(ev.Name, true)
			}
			return nil
		}
		fw.touch(key)
	case ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
		if _, ok := fw.pending[key]; ok || !isPartial(key) {
			fw.touch(key)
		}
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		delete(fw.pending, key)
		if etag, ok := fw.reported[key]; ok {
			delete(fw.reported, key)
			return fw.send(ctx, ObjectEvent{
				Name: EventRemoved, Bucket: fw.bucket, Key: key, ETag: etag,
				Time: time.Now().UTC(), Source: "fs",
			})
		}
	}
	return nil
}

// flush reports pending files that have stayed unchanged for settle.
func (fw *fsWatch) flush(ctx context.Context) error {
	now := time.Now()
	var ready []string
	for key, p := range fw.pending {
		if now.Sub(p.seen) < fw.f.settle {
			continue
		}
		st, err := statObject(fw.base, key)
		if err != nil {
			delete(fw.pending, key) // gone, or not a regular file: not an object
			continue
		}
		if st.Size() != p.size || !st.ModTime().Equal(p.modTime) {
			// Changed since last look (or first look): wait one more period.
			fw.pending[key] = pendingFile{size: st.Size(), modTime: st.ModTime(), seen: now, existing: p.existing}
			if now.Sub(st.ModTime()) < fw.f.settle {
				continue
			}
		}
		ready = append(ready, key)
	}
	sort.Strings(ready)
	for _, key := range ready {
		name := EventCreatedPut
		if fw.pending[key].existing {
			name = EventCreatedExisting
		}
		delete(fw.pending, key)
		st, err := statObject(fw.base, key)
		if err != nil {
			continue
		}
		if err := fw.report(ctx, name, fw.f.info(fw.bucket, key, st), readMeta(fw.base, key)); err != nil {
			return err
		}
	}
	return nil
}

func (fw *fsWatch) report(ctx context.Context, name string, info ObjectInfo, meta map[string]string) error {
	if fw.reported[info.Key] == info.ETag {
		return nil
	}
	fw.reported[info.Key] = info.ETag
	ev := eventFor(name, info, "fs")
	ev.Metadata = meta
	return fw.send(ctx, ev)
}

func (fw *fsWatch) send(ctx context.Context, ev ObjectEvent) error {
	select {
	case fw.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ Watcher = (*FS)(nil)
