package archive_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/archive"
	"github.com/sluicehq/sluice/nodes/nodestest"
	"github.com/sluicehq/sluice/storage"
)

var start = nodes.BatchStart{Flow: "logs", Topic: "app-logs", Partition: 3, Offset: 42, ID: "m-42",
	Time: time.Date(2026, 11, 25, 17, 4, 5, 0, time.UTC)}

func newArchive(t *testing.T, with string) (nodes.Batcher, *storage.Store) {
	t.Helper()
	store := storage.NewStore(storage.NewMem())
	require.NoError(t, store.EnsureBucket(t.Context(), "archive"))
	n := nodestest.New(t, "archive", with, nodes.Deps{Store: store})
	return n.(nodes.Batcher), store
}

// read returns an object, decompressed by the standard library (gzip) or
// the reference zstd decoder.
func read(t *testing.T, store *storage.Store, key string) (string, storage.ObjectInfo) {
	t.Helper()
	data, info, err := store.ReadAll(t.Context(), "archive", key, 0)
	require.NoError(t, err)
	var r io.Reader = bytes.NewReader(data)
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		r, err = stdgzip.NewReader(r)
		require.NoError(t, err)
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(r)
		require.NoError(t, err)
		defer d.Close()
		r = d
	}
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(out), info
}

func TestFormatsAndCompression(t *testing.T) {
	records := []string{`{"level":"info","msg":"a"}`, "{\n  \"level\": \"error\",\n  \"msg\": \"b\"\n}", `"plain string"`}
	for _, tc := range []struct {
		with, key, ctype, want string
	}{
		{`{bucket: archive}`, "logs/dt=2026-11-25/hour=17/part-3-42.ndjson.gz", "application/gzip",
			"{\"level\":\"info\",\"msg\":\"a\"}\n{\"level\":\"error\",\"msg\":\"b\"}\n\"plain string\"\n"},
		{`{bucket: archive, compression: zstd, level: best}`, "logs/dt=2026-11-25/hour=17/part-3-42.ndjson.zst", "application/zstd",
			"{\"level\":\"info\",\"msg\":\"a\"}\n{\"level\":\"error\",\"msg\":\"b\"}\n\"plain string\"\n"},
		{`{bucket: archive, format: json, compression: none}`, "logs/dt=2026-11-25/hour=17/part-3-42.json", "application/json",
			""},
	} {
		a, store := newArchive(t, tc.with)
		b := a.NewBatch(start)
		for _, r := range records {
			require.NoError(t, b.Add([]byte(r)))
		}
		w, err := b.Flush(t.Context())
		require.NoError(t, err, tc.with)
		assert.Equal(t, "archive/"+tc.key, w.Location)
		got, info := read(t, store, tc.key)
		assert.Equal(t, tc.ctype, info.ContentType, tc.with)
		assert.Equal(t, info.Size, w.Bytes)
		if tc.ctype == "application/json" {
			assert.JSONEq(t, `[{"level":"info","msg":"a"},{"level":"error","msg":"b"},"plain string"]`, got)
			continue
		}
		assert.Equal(t, tc.want, got, tc.with)
	}
}

func TestEmptyJSONArray(t *testing.T) {
	a, store := newArchive(t, `{bucket: archive, format: json, compression: none, key: "x-{{ batch.id }}.json"}`)
	_, err := a.NewBatch(start).Flush(t.Context())
	require.NoError(t, err)
	got, _ := read(t, store, "x-m-42.json")
	assert.JSONEq(t, `[]`, got)
}

func TestRecordsTheFormatCannotHold(t *testing.T) {
	a, store := newArchive(t, `{bucket: archive}`)
	b := a.NewBatch(start)
	require.NoError(t, b.Add([]byte(`{"ok":1}`)))
	err := b.Add([]byte("not json"))
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "not JSON")
	assert.Equal(t, int64(9), b.Size(), "a refused record leaves the batch as it was")
	_, err = b.Flush(t.Context())
	require.NoError(t, err)
	got, _ := read(t, store, "logs/dt=2026-11-25/hour=17/part-3-42.ndjson.gz")
	assert.Equal(t, "{\"ok\":1}\n", got)

	a, store = newArchive(t, `{bucket: archive, format: lines, compression: none}`)
	b = a.NewBatch(start)
	require.NoError(t, b.Add([]byte("2026-11-25 GET /\n")), "one trailing newline is the line's end")
	require.NoError(t, b.Add([]byte("not json is fine here")))
	err = b.Add([]byte("two\nlines"))
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "several lines")
	_, err = b.Flush(t.Context())
	require.NoError(t, err)
	got, info := read(t, store, "logs/dt=2026-11-25/hour=17/part-3-42.log")
	assert.Equal(t, "2026-11-25 GET /\nnot json is fine here\n", got)
	assert.Equal(t, "text/plain; charset=utf-8", info.ContentType)
}

// A batch whose write failed writes the same object when flushed again,
// and a batch restarted from the same first message names the same key.
func TestFlushAgainWritesTheSame(t *testing.T) {
	store := storage.NewStore(storage.NewMem())
	a := nodestest.New(t, "archive", `{bucket: archive, key: "p{{ batch.partition }}/{{ batch.offset }}{{ batch.ext }}"}`, nodes.Deps{Store: store}).(nodes.Batcher)
	b := a.NewBatch(start)
	require.NoError(t, b.Add([]byte(`{"n":1}`)))
	_, err := b.Flush(t.Context())
	require.ErrorIs(t, err, storage.ErrBucketNotFound)
	assert.False(t, nodes.IsPermanent(err), "a missing bucket is retried, not a reason to dead-letter the batch")
	require.NoError(t, store.EnsureBucket(t.Context(), "archive"))
	w, err := b.Flush(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "archive/p3/42.ndjson.gz", w.Location)
	first, _ := read(t, store, "p3/42.ndjson.gz")

	again := a.NewBatch(start)
	require.NoError(t, again.Add([]byte(`{"n":1}`)))
	require.NoError(t, again.Add([]byte(`{"n":2}`)))
	w2, err := again.Flush(t.Context())
	require.NoError(t, err)
	assert.Equal(t, w.Location, w2.Location)
	second, _ := read(t, store, "p3/42.ndjson.gz")
	assert.Equal(t, "{\"n\":1}\n", first)
	assert.Equal(t, "{\"n\":1}\n{\"n\":2}\n", second, "the rewrite replaces the object")
}

func TestConfigErrors(t *testing.T) {
	for with, want := range map[string]string{
		`{bucket: a, key: "logs/{{ batch.date }}.gz"}`: `test.yaml:1:19: archive: field "key": the key must use batch.offset or batch.id`,
		`{bucket: a, max_bytes: lots}`:                 "max_bytes must be a size from 1KiB to 1GiB",
		`{bucket: a, max_bytes: 2GiB}`:                 "max_bytes must be a size from 1KiB to 1GiB",
		`{bucket: a, format: csv}`:                     "format",
		`{bucket: a, key: "{{ batch.nope( }}"}`:        "key",
		`{key: "x-{{ batch.id }}"}`:                    "bucket",
	} {
		_, err := nodestest.Build("archive", with, nodes.Deps{})
		require.Error(t, err, with)
		assert.Contains(t, err.Error(), want, with)
	}
	a, err := nodestest.Build("archive", `{bucket: a}`, nodes.Deps{})
	require.NoError(t, err)
	assert.Equal(t, nodes.BatchLimits{Count: 10000, Bytes: 16 << 20, Wait: time.Minute}, a.(nodes.Batcher).BatchLimits())
}

func TestFiledUnderTheFirstRecordsTime(t *testing.T) {
	a, store := newArchive(t, `{bucket: archive, time: payload.ts, key: "{{ batch.date }}/{{ batch.hour }}/{{ batch.offset }}{{ batch.ext }}"}`)
	for _, tc := range []struct{ first, key string }{
		{`{"ts":"2024-02-29T23:59:59.5+02:00"}`, "2024-02-29/21/42.ndjson.gz"},
		{`{"ts":1700000000}`, "2023-11-14/22/42.ndjson.gz"},
		{`{"ts":"yesterday"}`, "2026-11-25/17/42.ndjson.gz"}, // not a time: the broker's
		{`{"no_ts":true}`, "2026-11-25/17/42.ndjson.gz"},
	} {
		s := start
		s.Payload = []byte(tc.first)
		b := a.NewBatch(s)
		require.NoError(t, b.Add(s.Payload))
		w, err := b.Flush(t.Context())
		require.NoError(t, err)
		assert.Equal(t, "archive/"+tc.key, w.Location, tc.first)
		got, _ := read(t, store, tc.key)
		assert.Equal(t, tc.first+"\n", got)
	}
}

// Any JSON value is a record: strings, numbers, booleans, null, lists.
func TestAnyJSONValueIsARecord(t *testing.T) {
	a, store := newArchive(t, `{bucket: archive, compression: none}`)
	b := a.NewBatch(start)
	for _, rec := range []string{`"hello"`, `42`, `true`, `null`, `[1,2]`, `{"a":1}`} {
		require.NoError(t, b.Add([]byte(rec)), rec)
	}
	_, err := b.Flush(t.Context())
	require.NoError(t, err)
	got, _ := read(t, store, "logs/dt=2026-11-25/hour=17/part-3-42.ndjson")
	assert.Equal(t, "\"hello\"\n42\ntrue\nnull\n[1,2]\n{\"a\":1}\n", got)
}
