// Package storagetest is the conformance suite every storage driver runs:
// the same named subtests, so drivers behave alike behind storage.Store.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/storage"
)

// Harness makes a fresh, empty store for one subtest; the suite closes it.
type Harness func(t *testing.T) *storage.Store

// Run runs the suite against the driver the harness opens.
func Run(t *testing.T, open Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"PutGetRoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"BucketNotFound", testBucketNotFound},
		{"Delete", testDelete},
		{"ListOrderAndPrefix", testList},
		{"InvalidKeys", testInvalidKeys},
		{"ListPrefixStaysInBucket", testListPrefixStaysInBucket},
		{"InvalidBuckets", testInvalidBuckets},
		{"ReadAllLimit", testReadAllLimit},
		{"ContentType", testContentType},
		{"Watch", testWatch},
		{"Copy", testCopy},
		{"Presign", testPresign},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			require.NoError(t, s.EnsureBucket(t.Context(), "bucket-a"))
			tc.fn(t, s)
		})
	}
}

func testRoundTrip(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	data := []byte("hello, sluice")
	info, err := s.PutBytes(ctx, "bucket-a", "dir/sub/hello.txt", data, storage.PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, "bucket-a", info.Bucket)
	assert.Equal(t, "dir/sub/hello.txt", info.Key)
	assert.EqualValues(t, len(data), info.Size)
	assert.NotEmpty(t, info.ETag)

	got, ginfo, err := s.ReadAll(ctx, "bucket-a", "dir/sub/hello.txt", 0)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Equal(t, info.ETag, ginfo.ETag)

	st, err := s.Stat(ctx, "bucket-a", "dir/sub/hello.txt")
	require.NoError(t, err)
	assert.Equal(t, info.ETag, st.ETag)
	assert.EqualValues(t, len(data), st.Size)

	// Empty objects are objects.
	_, err = s.PutBytes(ctx, "bucket-a", "empty", nil, storage.PutOptions{})
	require.NoError(t, err)
	got, _, err = s.ReadAll(ctx, "bucket-a", "empty", 0)
	require.NoError(t, err)
	assert.Empty(t, got)
}

func testOverwrite(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	_, err := s.PutBytes(ctx, "bucket-a", "k", []byte("one"), storage.PutOptions{})
	require.NoError(t, err)
	_, err = s.PutBytes(ctx, "bucket-a", "k", []byte("second"), storage.PutOptions{})
	require.NoError(t, err)
	got, _, err := s.ReadAll(ctx, "bucket-a", "k", 0)
	require.NoError(t, err)
	assert.Equal(t, "second", string(got))
}

func testNotFound(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	_, err := s.Stat(ctx, "bucket-a", "missing")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, _, err = s.ReadAll(ctx, "bucket-a", "missing/deeper", 0)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.PutBytes(ctx, "bucket-a", "dir/file", []byte("x"), storage.PutOptions{})
	require.NoError(t, err)
	_, err = s.Stat(ctx, "bucket-a", "dir") // a "folder" is not an object
	assert.ErrorIs(t, err, storage.ErrNotFound)
}

func testBucketNotFound(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	_, err := s.PutBytes(ctx, "no-such-bucket", "k", []byte("x"), storage.PutOptions{})
	assert.ErrorIs(t, err, storage.ErrBucketNotFound)
	_, err = s.Stat(ctx, "no-such-bucket", "k")
	assert.ErrorIs(t, err, storage.ErrBucketNotFound)
	err = s.List(ctx, "no-such-bucket", "", func(storage.ObjectInfo) error { return nil })
	assert.ErrorIs(t, err, storage.ErrBucketNotFound)
}

func testDelete(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	_, err := s.PutBytes(ctx, "bucket-a", "a/b/c", []byte("x"), storage.PutOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "bucket-a", "a/b/c"))
	_, err = s.Stat(ctx, "bucket-a", "a/b/c")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.NoError(t, s.Delete(ctx, "bucket-a", "a/b/c"), "deleting a missing object is not an error")
	n := 0
	require.NoError(t, s.List(ctx, "bucket-a", "", func(storage.ObjectInfo) error { n++; return nil }))
	assert.Zero(t, n)
}

func testList(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	keys := []string{"b.txt", "a/2", "a/1", "a-c", "c/d/e"}
	for _, k := range keys {
		_, err := s.PutBytes(ctx, "bucket-a", k, []byte(k), storage.PutOptions{})
		require.NoError(t, err)
	}
	list := func(prefix string) []string {
		var out []string
		require.NoError(t, s.List(ctx, "bucket-a", prefix, func(o storage.ObjectInfo) error {
			out = append(out, o.Key)
			return nil
		}))
		return out
	}
	assert.Equal(t, []string{"a-c", "a/1", "a/2", "b.txt", "c/d/e"}, list(""))
	assert.Equal(t, []string{"a/1", "a/2"}, list("a/"))
	assert.Equal(t, []string{"a-c", "a/1", "a/2"}, list("a"))
	assert.Equal(t, []string{"c/d/e"}, list("c/d/"))
	assert.Empty(t, list("zzz"))

	stop := errors.New("stop")
	n := 0
	err := s.List(ctx, "bucket-a", "", func(storage.ObjectInfo) error { n++; return stop })
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, n)
}

func testInvalidKeys(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	for _, key := range []string{
		"", "/abs", "../escape", "a/../../b", "a/./b", "a//b", "trailing/",
		"nul\x00byte", "back\\slash", "ctl\x01", "del\x7f", string([]byte{0xff, 0xfe}),
		"next\u0085line", "c1\u009b[31m", "invoice\u202egpj.exe", "iso\u2066late", "mark\u200f",
		strings.Repeat("k", storage.MaxKeyLen+1),
	} {
		_, err := s.PutBytes(ctx, "bucket-a", key, []byte("x"), storage.PutOptions{})
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "key %q", key)
		_, _, err = s.ReadAll(ctx, "bucket-a", key, 0)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "key %q", key)
		_, err = s.Stat(ctx, "bucket-a", key)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "key %q", key)
		assert.ErrorIs(t, s.Delete(ctx, "bucket-a", key), storage.ErrInvalidKey, "key %q", key)
	}
	// Letters of every script are keys.
	for _, key := range []string{"日本/写真.jpg", "café/naïve.txt", "emoji-📷.png", "عربي.txt"} {
		_, err := s.PutBytes(ctx, "bucket-a", key, []byte("x"), storage.PutOptions{})
		assert.NoError(t, err, "key %q", key)
	}
}

// A prefix is matched against keys: it never names a folder outside.
func testListPrefixStaysInBucket(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	require.NoError(t, s.EnsureBucket(ctx, "bucket-b"))
	_, err := s.PutBytes(ctx, "bucket-b", "private", []byte("p"), storage.PutOptions{})
	require.NoError(t, err)
	_, err = s.PutBytes(ctx, "bucket-a", "a/x", []byte("x"), storage.PutOptions{})
	require.NoError(t, err)
	for _, prefix := range []string{"../", "../bucket-b/", "a/../../bucket-b/", "./", "//", "a//"} {
		var keys []string
		require.NoError(t, s.List(ctx, "bucket-a", prefix, func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }))
		assert.Empty(t, keys, "prefix %q", prefix)
	}
	require.NoError(t, s.Delete(ctx, "bucket-b", "private"))
}

func testInvalidBuckets(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	for _, b := range []string{"", "ab", "UPPER", "under_score", "-start", "end-", "a..b", "../etc", strings.Repeat("b", 64)} {
		err := s.EnsureBucket(ctx, b)
		assert.ErrorIs(t, err, storage.ErrInvalidBucket, "bucket %q", b)
	}
}

func testReadAllLimit(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	_, err := s.PutBytes(ctx, "bucket-a", "big", bytes.Repeat([]byte("x"), 1000), storage.PutOptions{})
	require.NoError(t, err)
	_, _, err = s.ReadAll(ctx, "bucket-a", "big", 999)
	assert.ErrorIs(t, err, storage.ErrTooLarge)
	got, _, err := s.ReadAll(ctx, "bucket-a", "big", 1000)
	require.NoError(t, err)
	assert.Len(t, got, 1000)
}

func testContentType(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	info, err := s.PutBytes(ctx, "bucket-a", "photo.JPG", []byte("x"), storage.PutOptions{})
	require.NoError(t, err)
	st, err := s.Stat(ctx, "bucket-a", "photo.JPG")
	require.NoError(t, err)
	assert.Equal(t, "image/jpeg", st.ContentType)
	_ = info
}

func testWatch(t *testing.T, s *storage.Store) {
	if _, ok := s.Driver().(storage.Watcher); !ok {
		t.Skip("driver does not watch")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := s.PutBytes(ctx, "bucket-a", "before.txt", []byte("old"), storage.PutOptions{Metadata: map[string]string{storage.MetaRun: "run-0"}})
	require.NoError(t, err)

	events := make(chan storage.ObjectEvent, 16)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, "bucket-a", events) }()

	next := func() storage.ObjectEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case err := <-done:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return storage.ObjectEvent{}
	}
	ev := next()
	assert.Equal(t, storage.EventCreatedExisting, ev.Name)
	assert.Equal(t, "before.txt", ev.Key)
	assert.True(t, ev.Created())
	if ev.Source != "s3-list" { // S3 listings carry no user metadata
		assert.Equal(t, map[string]string{storage.MetaRun: "run-0"}, ev.Metadata, "events carry the object's user metadata")
	}

	info, err := s.PutBytes(ctx, "bucket-a", "new/after.txt", []byte("new!"), storage.PutOptions{Metadata: map[string]string{storage.MetaRun: "run-1"}})
	require.NoError(t, err)
	ev = next()
	assert.Equal(t, storage.EventCreatedPut, ev.Name)
	assert.Equal(t, "bucket-a", ev.Bucket)
	assert.Equal(t, "new/after.txt", ev.Key)
	assert.EqualValues(t, 4, ev.Size)
	assert.Equal(t, info.ETag, ev.ETag)
	assert.Equal(t, map[string]string{storage.MetaRun: "run-1"}, ev.Metadata)

	require.NoError(t, s.Delete(ctx, "bucket-a", "new/after.txt"))
	ev = next()
	assert.True(t, ev.Removed(), "got %s", ev.Name)
	assert.Equal(t, "new/after.txt", ev.Key)

	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop with its context")
	}
}

func testCopy(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	require.NoError(t, s.EnsureBucket(ctx, "bucket-b"))
	src, err := s.PutBytes(ctx, "bucket-a", "in/photo.bin", []byte("pixels"), storage.PutOptions{ContentType: "image/x-test"})
	require.NoError(t, err)

	dst, err := s.Copy(ctx, "bucket-a", "in/photo.bin", "bucket-b", "out/copy.bin")
	require.NoError(t, err)
	assert.Equal(t, "bucket-b", dst.Bucket)
	assert.Equal(t, "out/copy.bin", dst.Key)
	assert.EqualValues(t, 6, dst.Size)
	got, info, err := s.ReadAll(ctx, "bucket-b", "out/copy.bin", 0)
	require.NoError(t, err)
	assert.Equal(t, "pixels", string(got))
	srcInfo, err := s.Stat(ctx, "bucket-a", "in/photo.bin")
	require.NoError(t, err)
	assert.Equal(t, srcInfo.ContentType, info.ContentType, "the content type is copied (drivers that keep none derive it from the key)")

	// Within a bucket, over an existing object; the source stays.
	_, err = s.PutBytes(ctx, "bucket-a", "other", []byte("old"), storage.PutOptions{})
	require.NoError(t, err)
	_, err = s.Copy(ctx, "bucket-a", "in/photo.bin", "bucket-a", "other")
	require.NoError(t, err)
	got, _, err = s.ReadAll(ctx, "bucket-a", "other", 0)
	require.NoError(t, err)
	assert.Equal(t, "pixels", string(got))
	st, err := s.Stat(ctx, "bucket-a", "in/photo.bin")
	require.NoError(t, err)
	assert.Equal(t, src.ETag, st.ETag)

	// Onto itself: nothing changes.
	same, err := s.Copy(ctx, "bucket-a", "in/photo.bin", "bucket-a", "in/photo.bin")
	require.NoError(t, err)
	assert.Equal(t, src.ETag, same.ETag)

	_, err = s.Copy(ctx, "bucket-a", "missing", "bucket-b", "x")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.Copy(ctx, "bucket-a", "in/photo.bin", "no-such-bucket", "x")
	assert.ErrorIs(t, err, storage.ErrBucketNotFound)
	_, err = s.Copy(ctx, "bucket-a", "in/photo.bin", "bucket-b", "../x")
	assert.ErrorIs(t, err, storage.ErrInvalidKey)
}

func testPresign(t *testing.T, s *storage.Store) {
	ctx := t.Context()
	_, err := s.PutBytes(ctx, "bucket-a", "shared/report.txt", []byte("for your eyes"), storage.PutOptions{})
	require.NoError(t, err)
	if !s.CanPresign() {
		_, err := s.Presign(ctx, http.MethodGet, "bucket-a", "shared/report.txt", time.Minute)
		assert.ErrorIs(t, err, storage.ErrNotSupported)
		assert.ErrorContains(t, err, "need s3://")
		return
	}
	_, err = s.Presign(ctx, http.MethodDelete, "bucket-a", "shared/report.txt", time.Minute)
	assert.ErrorContains(t, err, "GET or PUT")
	_, err = s.Presign(ctx, http.MethodGet, "bucket-a", "shared/report.txt", 8*24*time.Hour)
	assert.ErrorContains(t, err, "outside")

	get, err := s.Presign(ctx, http.MethodGet, "bucket-a", "shared/report.txt", time.Minute)
	require.NoError(t, err)
	resp, err := http.Get(get)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, "for your eyes", string(body))

	put, err := s.Presign(ctx, http.MethodPut, "bucket-a", "shared/upload.txt", time.Minute)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, put, strings.NewReader("uploaded"))
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	got, _, err := s.ReadAll(ctx, "bucket-a", "shared/upload.txt", 0)
	require.NoError(t, err)
	assert.Equal(t, "uploaded", string(got))

	// A URL for one object grants nothing on another.
	resp, err = http.Get(strings.Replace(get, "report.txt", "upload.txt", 1))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
}
