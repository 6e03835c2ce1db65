package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

func init() {
	Register("mem", func(context.Context, *url.URL) (Driver, error) { return NewMem(), nil })
}

// Mem is an in-memory driver: for tests and throwaway runs. It watches
// itself, so bucket triggers work on it as on a folder.
type Mem struct {
	mu       sync.Mutex
	buckets  map[string]map[string]memObject
	watchers map[string][]chan<- ObjectEvent
}

type memObject struct {
	data []byte
	info ObjectInfo
	meta map[string]string // user metadata
}

// NewMem returns an empty in-memory driver.
func NewMem() *Mem {
	return &Mem{buckets: map[string]map[string]memObject{}, watchers: map[string][]chan<- ObjectEvent{}}
}

func (m *Mem) bucket(name string) (map[string]memObject, error) {
	b, ok := m.buckets[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrBucketNotFound)
	}
	return b, nil
}

func (m *Mem) NewReader(_ context.Context, bucket, key string) (io.ReadCloser, ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.bucket(bucket)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	o, ok := b[key]
	if !ok {
		return nil, ObjectInfo{}, fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(o.data)), o.info, nil
}

func (m *Mem) Put(ctx context.Context, bucket, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	sum := md5.Sum(data)
	info := ObjectInfo{
		Bucket: bucket, Key: key, Size: int64(len(data)),
		ETag:        hex.EncodeToString(sum[:]),
		ContentType: contentType(key, opts.ContentType),
		Modified:    time.Now().UTC(),
	}
	m.mu.Lock()
	b, err := m.bucket(bucket)
	if err != nil {
		m.mu.Unlock()
		return ObjectInfo{}, err
	}
	b[key] = memObject{data: data, info: info, meta: maps.Clone(opts.Metadata)}
	watchers := append([]chan<- ObjectEvent(nil), m.watchers[bucket]...)
	m.mu.Unlock()
	ev := eventFor(EventCreatedPut, info, "mem")
	ev.Metadata = maps.Clone(opts.Metadata)
	notify(ctx, watchers, ev)
	return info, nil
}

func (m *Mem) Stat(_ context.Context, bucket, key string) (ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.bucket(bucket)
	if err != nil {
		return ObjectInfo{}, err
	}
	o, ok := b[key]
	if !ok {
		return ObjectInfo{}, fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	return o.info, nil
}

func (m *Mem) Delete(ctx context.Context, bucket, key string) error {
	m.mu.Lock()
	b, err := m.bucket(bucket)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	o, existed := b[key]
	delete(b, key)
	watchers := append([]chan<- ObjectEvent(nil), m.watchers[bucket]...)
	m.mu.Unlock()
	if existed {
		notify(ctx, watchers, eventFor(EventRemoved, o.info, "mem"))
	}
	return nil
}

func (m *Mem) List(ctx context.Context, bucket, prefix string, fn func(ObjectInfo) error) error {
	m.mu.Lock()
	b, err := m.bucket(bucket)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	infos := make([]ObjectInfo, 0, len(b))
	for k, o := range b {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, o.info)
		}
	}
	m.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mem) EnsureBucket(_ context.Context, bucket string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.buckets[bucket] == nil {
		m.buckets[bucket] = map[string]memObject{}
	}
	return nil
}

// Watch implements Watcher. Events are sent synchronously by the writer, so
// a slow receiver slows writers down rather than losing events.
func (m *Mem) Watch(ctx context.Context, bucket string, events chan<- ObjectEvent) error {
	m.mu.Lock()
	b, err := m.bucket(bucket)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	existing := make([]ObjectInfo, 0, len(b))
	meta := map[string]map[string]string{}
	for _, o := range b {
		existing = append(existing, o.info)
		meta[o.info.Key] = maps.Clone(o.meta)
	}
	m.watchers[bucket] = append(m.watchers[bucket], events)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		ws := m.watchers[bucket]
		for i, w := range ws {
			if w == events {
				m.watchers[bucket] = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		m.mu.Unlock()
	}()
	sort.Slice(existing, func(i, j int) bool { return existing[i].Key < existing[j].Key })
	for _, info := range existing {
		ev := eventFor(EventCreatedExisting, info, "mem")
		ev.Metadata = meta[info.Key]
		select {
		case events <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (m *Mem) Close() error { return nil }

func notify(ctx context.Context, watchers []chan<- ObjectEvent, ev ObjectEvent) {
	for _, w := range watchers {
		select {
		case w <- ev:
		case <-ctx.Done():
			return
		}
	}
}

func eventFor(name string, info ObjectInfo, source string) ObjectEvent {
	return ObjectEvent{
		Name: name, Bucket: info.Bucket, Key: info.Key, Size: info.Size, ETag: info.ETag,
		ContentType: info.ContentType, Time: time.Now().UTC(), Source: source,
	}
}

// ContentType returns the content type of key's extension, or
// application/octet-stream.
func ContentType(key string) string { return contentType(key, "") }

// contentType returns explicit if set, else the type of key's extension,
// else application/octet-stream.
func contentType(key, explicit string) string {
	if explicit != "" {
		return explicit
	}
	if t := mime.TypeByExtension(strings.ToLower(path.Ext(key))); t != "" {
		return t
	}
	return "application/octet-stream"
}

var _ Watcher = (*Mem)(nil)
