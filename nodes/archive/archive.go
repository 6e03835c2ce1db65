// Package archive holds the archive node: messages batched into compressed
// objects (NDJSON, lines or a JSON array; gzip or zstd) under keys with
// time partitions, for log archival and message relays.
package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

const (
	fBucket      = "bucket"
	fKey         = "key"
	fFormat      = "format"
	fCompression = "compression"
	fLevel       = "level"
	fMaxCount    = "max_count"
	fMaxBytes    = "max_bytes"
	fMaxWait     = "max_wait"
	fTime        = "time"
)

// DefaultKey partitions objects by the flow, the day and the hour of the
// batch's first message, and names each after that message's position.
const DefaultKey = "{{ flow }}/dt={{ batch.date }}/hour={{ batch.hour }}/part-{{ batch.partition }}-{{ batch.offset }}{{ batch.ext }}"

// maxBatchBytes bounds max_bytes: a batch is held in memory until written.
const maxBatchBytes = 1 << 30

func init() {
	nodes.Register(nodes.Spec{
		Type:    "archive",
		Summary: "Batch messages into compressed objects (NDJSON, lines or JSON array; gzip or zstd) with time-partitioned keys.",
		Description: "The last step of its flow. Messages are batched per partition of the trigger topic until " +
			"max_count messages, max_bytes of records (before compression) or max_wait since the first message, whichever " +
			"comes first, then written as one object; the batch's messages are acked (their position " +
			"committed) only after the object is written. Keys are made from the batch's first message " +
			"(batch.partition, batch.offset, batch.id, and batch.time/date/hour/minute: the time expression over " +
			"it, or when the broker stored it), so a batch consumed again after a crash rewrites the same key: no lost and no duplicated " +
			"records. Partial batches are written on shutdown. Records are the message payloads (or what the " +
			"steps before made of them); a record the format cannot hold (not JSON for ndjson and json, " +
			"several lines for lines) is dead-lettered with the reason, the rest of the batch is written. " +
			"Objects of one partition hold records in publish order; a batch that spans an hour " +
			"boundary is filed under its first message's hour.",
		Fields: []nodes.Field{
			{Name: fBucket, Kind: nodes.String, Required: true, Role: nodes.RoleBucket, Doc: "Target bucket."},
			{Name: fKey, Kind: nodes.Template, Default: DefaultKey, Doc: "Object key; must use batch.offset or batch.id so every batch has its own object."},
			{Name: fFormat, Kind: nodes.Enum, Options: []string{"ndjson", "lines", "json"}, Default: "ndjson",
				Doc: "ndjson: one compact JSON value per line; lines: the payloads as text lines; json: one JSON array."},
			{Name: fCompression, Kind: nodes.Enum, Options: []string{"gzip", "zstd", "none"}, Default: "gzip", Doc: "Compression of the object."},
			{Name: fLevel, Kind: nodes.Enum, Options: []string{"fastest", "default", "better", "best"}, Default: "default", Doc: "Compression level."},
			{Name: fMaxCount, Kind: nodes.Int, Default: 10000, Min: 1, Max: 10_000_000, Doc: "Messages per batch at most."},
			{Name: fMaxBytes, Kind: nodes.String, Default: "16MiB", Doc: "Bytes of records per object at most, before compression (such as 64MiB; up to 1GiB): a batch is held in memory until written."},
			{Name: fMaxWait, Kind: nodes.Duration, Default: time.Minute, Doc: "Longest time a record waits in an open batch."},
			{Name: fTime, Kind: nodes.Expr, Doc: "The time a batch is filed under (batch.time, date, hour, minute), from its first message as it arrived " +
				"(payload, meta): an RFC 3339 string or Unix seconds, such as payload.ts. When absent, or when it gives no time, " +
				"the broker's time of that message."},
		},
		Examples: []nodes.Example{{
			Title: "Hourly gzip NDJSON archives of a log topic",
			YAML:  "node: archive\nwith:\n  bucket: archive\n  key: \"logs/dt={{ batch.date }}/hour={{ batch.hour }}/part-{{ batch.partition }}-{{ batch.offset }}{{ batch.ext }}\"\n  max_bytes: 64MiB\n  max_wait: 5m",
		}},
		New: newArchive,
	})
}

type archive struct {
	bucket      string
	key         *eval.Template
	format      string
	compression string
	gzipLevel   int
	zstdLevel   zstd.EncoderLevel
	timeOf      *eval.Program
	limits      nodes.BatchLimits
	ext, ctype  string
	store       *storage.Store
	gzips       sync.Pool // *gzip.Writer of this level
	zstds       sync.Pool // *zstd.Encoder of this level
}

func newArchive(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	a := &archive{
		bucket: c.String(fBucket), key: c.Template(fKey), format: c.String(fFormat),
		compression: c.String(fCompression), store: d.Store, timeOf: c.Expr(fTime),
		gzipLevel: map[string]int{"fastest": gzip.BestSpeed, "default": gzip.DefaultCompression, "better": 7, "best": gzip.BestCompression}[c.String(fLevel)],
		zstdLevel: map[string]zstd.EncoderLevel{"fastest": zstd.SpeedFastest, "default": zstd.SpeedDefault, "better": zstd.SpeedBetterCompression, "best": zstd.SpeedBestCompression}[c.String(fLevel)],
		limits:    nodes.BatchLimits{Count: c.Int(fMaxCount), Wait: c.Duration(fMaxWait)},
	}
	if src := a.key.Source(); !strings.Contains(src, "batch.offset") && !strings.Contains(src, "batch.id") {
		c.Problemf(fKey, "the key must use batch.offset or batch.id: without them every batch writes the same object")
	}
	n, err := humanize.ParseBytes(c.String(fMaxBytes))
	if err != nil || n < 1024 || n > maxBatchBytes {
		c.Problemf(fMaxBytes, "max_bytes must be a size from 1KiB to 1GiB, such as 16MiB, not %q", c.String(fMaxBytes))
	}
	a.limits.Bytes = int64(n)
	if a.limits.Wait <= 0 {
		c.Problemf(fMaxWait, "max_wait must be above zero")
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	a.ext, a.ctype = map[string]string{"ndjson": ".ndjson", "lines": ".log", "json": ".json"}[a.format],
		map[string]string{"ndjson": "application/x-ndjson", "lines": "text/plain; charset=utf-8", "json": "application/json"}[a.format]
	switch a.compression {
	case "gzip":
		a.ext, a.ctype = a.ext+".gz", "application/gzip"
	case "zstd":
		a.ext, a.ctype = a.ext+".zst", "application/zstd"
	}
	return a, nil
}

// Process is not called: the engine batches (see nodes.Batcher).
func (a *archive) Process(context.Context, *nodes.Envelope) error {
	return nodes.Permanent(errors.New("archive runs in batches: it must be the last step of a flow triggered by a topic"))
}

func (a *archive) BatchLimits() nodes.BatchLimits { return a.limits }

func (a *archive) NewBatch(start nodes.BatchStart) nodes.Batch {
	b := &batch{a: a, start: start}
	t := a.fileTime(start)
	b.key, b.keyErr = a.key.Render(eval.Vars{Flow: start.Flow, Batch: map[string]any{
		"partition": start.Partition, "offset": start.Offset, "id": start.ID, "topic": start.Topic,
		"time": t, "date": t.Format("2006-01-02"), "hour": t.Format("15"), "minute": t.Format("04"), "ext": a.ext,
	}})
	b.w = a.compressor(&b.out)
	return b
}

// fileTime is the time a batch is filed under: the time expression over
// its first message when it gives one, else the broker's time.
func (a *archive) fileTime(start nodes.BatchStart) time.Time {
	if a.timeOf == nil {
		return start.Time.UTC()
	}
	var payload any
	_ = json.Unmarshal(start.Payload, &payload) // not JSON: the expression sees nil
	meta := map[string]any{}
	for k, v := range start.Meta {
		meta[k] = v
	}
	v, err := a.timeOf.Eval(eval.Vars{Payload: payload, Meta: meta, Flow: start.Flow})
	if err != nil {
		return start.Time.UTC()
	}
	switch x := v.(type) {
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.UTC()
		}
	case float64:
		return time.Unix(0, int64(x*1e9)).UTC()
	case int:
		return time.Unix(int64(x), 0).UTC()
	case time.Time:
		return x.UTC()
	}
	return start.Time.UTC()
}

// compressor returns a writer compressing into out, from the node's pool.
func (a *archive) compressor(out *bytes.Buffer) io.WriteCloser {
	switch a.compression {
	case "gzip":
		if w, ok := a.gzips.Get().(*gzip.Writer); ok {
			w.Reset(out)
			return w
		}
		w, _ := gzip.NewWriterLevel(out, a.gzipLevel) // one of the valid levels
		return w
	case "zstd":
		if w, ok := a.zstds.Get().(*zstd.Encoder); ok {
			w.Reset(out)
			return w
		}
		w, _ := zstd.NewWriter(out, zstd.WithEncoderLevel(a.zstdLevel), zstd.WithEncoderConcurrency(1))
		return w
	}
	return nopCloser{out}
}

func (a *archive) recycle(w io.WriteCloser) {
	switch w := w.(type) {
	case *gzip.Writer:
		a.gzips.Put(w)
	case *zstd.Encoder:
		a.zstds.Put(w)
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// batch compresses records as they are added, so compression overlaps
// with reading the next messages, and keeps the finished object to write
// it again if a write fails.
type batch struct {
	a       *archive
	start   nodes.BatchStart
	key     string
	keyErr  error
	out     bytes.Buffer
	w       io.WriteCloser
	scratch bytes.Buffer
	count   int
	size    int64
	sealed  bool
	err     error // a compressor failure (writing to memory: not expected)
}

func (b *batch) Size() int64 { return b.size }

func (b *batch) Add(rec []byte) error {
	if b.sealed {
		return errors.New("archive: record added to a written batch")
	}
	switch b.a.format {
	case "lines":
		rec = bytes.TrimSuffix(rec, []byte("\n"))
		rec = bytes.TrimSuffix(rec, []byte("\r"))
		if bytes.IndexByte(rec, '\n') >= 0 {
			return nodes.Permanent(errors.New("the record spans several lines; format lines needs one line per message (use ndjson)"))
		}
	default:
		if !json.Valid(rec) {
			return nodes.Permanent(fmt.Errorf("the record is not JSON; format %s needs JSON payloads (use lines for text)", b.a.format))
		}
		if bytes.IndexByte(rec, '\n') >= 0 {
			b.scratch.Reset()
			_ = json.Compact(&b.scratch, rec) // valid: cannot fail
			rec = b.scratch.Bytes()
		}
	}
	switch {
	case b.a.format != "json":
	case b.count == 0:
		b.write([]byte("[\n"))
	default:
		b.write([]byte(",\n"))
	}
	b.write(rec)
	if b.a.format != "json" {
		b.write([]byte("\n"))
	}
	b.count++
	b.size += int64(len(rec)) + 1
	return nil
}

func (b *batch) write(p []byte) {
	if b.err == nil && len(p) > 0 {
		_, b.err = b.w.Write(p)
	}
}

// Flush finishes the object (once) and writes it. Called again after a
// failed write, it writes the same bytes.
func (b *batch) Flush(ctx context.Context) (nodes.Written, error) {
	if b.keyErr != nil {
		return nodes.Written{}, nodes.Permanent(fmt.Errorf("key: %w", b.keyErr))
	}
	if !b.sealed {
		b.sealed = true
		if b.a.format == "json" {
			if b.count == 0 {
				b.write([]byte("["))
			}
			b.write([]byte("\n]\n"))
		}
		if err := b.w.Close(); b.err == nil {
			b.err = err
		}
		b.a.recycle(b.w)
		b.w = nil
	}
	if b.err != nil {
		return nodes.Written{}, nodes.Permanent(fmt.Errorf("compress: %w", b.err))
	}
	info, err := b.a.store.PutBytes(ctx, b.a.bucket, b.key, b.out.Bytes(), storage.PutOptions{ContentType: b.a.ctype})
	if err != nil {
		err = fmt.Errorf("write %s/%s: %w", b.a.bucket, b.key, err)
		if errors.Is(err, storage.ErrBucketNotFound) {
			// Created at start, so gone since: an incident to fix, not a
			// reason to dead-letter the batch; the write is retried.
			return nodes.Written{}, err
		}
		return nodes.Written{}, nodes.StorageError(err)
	}
	return nodes.Written{Location: b.a.bucket + "/" + b.key, Bytes: info.Size}, nil
}

var _ nodes.Batcher = (*archive)(nil)
