// Package storage is Sluice's portable object storage: buckets of objects
// addressed by key, over drivers chosen by URL scheme (fs://DIR, mem://,
// and s3:// in its own package). Callers use Store; drivers implement the
// small Driver interface and map their errors to the portable ones below,
// so no vendor type or error leaks out.
//
// Drivers that can report changes implement Watcher; their events share one
// shape, ObjectEvent, modelled on S3 event records, and ParseEvents reads
// S3, MinIO and COS notification records into it. Other optional
// behaviour (WebhookReceiver) is asked for with Store.As, never by
// asserting a driver's concrete type.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/redact"
	"github.com/sluicehq/sluice/internal/scheme"
)

// Portable errors. Drivers wrap them (fmt.Errorf("...: %w", ErrNotFound));
// callers test with errors.Is.
var (
	ErrNotFound       = errors.New("object not found")
	ErrBucketNotFound = errors.New("bucket not found")
	ErrInvalidKey     = errors.New("invalid object key")
	ErrInvalidBucket  = errors.New("invalid bucket name")
	ErrTooLarge       = errors.New("object too large")
	ErrNotSupported   = errors.New("not supported by this storage driver")
)

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Bucket      string    `json:"bucket"`
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	ETag        string    `json:"etag"`
	ContentType string    `json:"content_type,omitempty"`
	Modified    time.Time `json:"modified"`
}

// PutOptions are optional attributes of a written object.
type PutOptions struct {
	ContentType string // detected from the key's extension when empty
	// Metadata is user metadata kept with the object: lowercase keys of
	// letters, digits and '-', short text values. The s3 driver stores
	// it as x-amz-meta-<key>, mem in memory, fs in extended attributes
	// user.<key> where the filesystem has them (elsewhere it is dropped).
	Metadata map[string]string
}

// MetaRun is the user metadata key naming the run that wrote an object
// (lineage): events of the object carry it, and runs they start record
// that run as their parent.
const MetaRun = "sluice-run"

// Driver is what a storage backend implements. Bucket and key arguments
// have been validated by Store. Methods must be safe for concurrent use and
// return errors wrapping the portable errors above where they apply.
type Driver interface {
	// NewReader opens an object; the caller closes the reader.
	NewReader(ctx context.Context, bucket, key string) (io.ReadCloser, ObjectInfo, error)
	// Put stores r's content under key, replacing any object there. A
	// reader sees either the old or the new object, never a partial one.
	Put(ctx context.Context, bucket, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
	Stat(ctx context.Context, bucket, key string) (ObjectInfo, error)
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, bucket, key string) error
	// List calls fn for each object whose key starts with prefix, in key
	// order, until fn returns an error (which List returns).
	List(ctx context.Context, bucket, prefix string, fn func(ObjectInfo) error) error
	// EnsureBucket creates the bucket if it does not exist.
	EnsureBucket(ctx context.Context, bucket string) error
	Close() error
}

// Watcher is implemented by drivers that report object events themselves.
// Watch sends, in order, an event for every object present when it starts
// (Name "s3:ObjectCreated:Existing"), then one for each later change,
// until ctx ends; it returns ctx's error then, or the error that stopped
// it. Receivers deduplicate by (bucket, key, etag): an object may be
// reported twice across restarts, never silently missed.
type Watcher interface {
	Watch(ctx context.Context, bucket string, events chan<- ObjectEvent) error
}

// WebhookReceiver is implemented by drivers whose watchers are fed by
// bucket notifications posted over HTTP (the s3 driver: MinIO's webhook
// target, or a relay of S3 or COS records). `sluice run` mounts the handler
// on its listener at /hooks/s3. The handler answers 2xx only once the
// request's events were handed to the watchers of their buckets, so a
// sender that retries (MinIO's queue_dir) loses nothing. Ask a Store for it
// with As:
//
//	var wr storage.WebhookReceiver
//	if store.As(&wr) {
//		mux.Handle("/hooks/s3", wr.WebhookHandler())
//	}
type WebhookReceiver interface {
	WebhookHandler() http.Handler
}

// Event names, as S3 and MinIO spell them.
const (
	EventCreatedPut      = "s3:ObjectCreated:Put"
	EventCreatedExisting = "s3:ObjectCreated:Existing"
	EventRemoved         = "s3:ObjectRemoved:Delete"
)

// ObjectEvent is the one shape of a bucket notification, whatever its
// source (folder watcher, MinIO, S3, COS).
//
// ETag identifies the object version an event is about. A removal names
// the removed version's etag where the source knows it; S3 removal
// records carry none, so the record's sequencer stands in ("seq-…"):
// either way, two deletions of a key that was written again in between
// have different ETags, and are two events.
type ObjectEvent struct {
	Name        string    `json:"event"`
	Bucket      string    `json:"bucket"`
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	ETag        string    `json:"etag,omitempty"`
	ContentType string    `json:"content_type,omitempty"`
	VersionID   string    `json:"version_id,omitempty"`
	Time        time.Time `json:"time"`
	Source      string    `json:"source"`
	// Generation counts the removals of the key the engine saw before this
	// version was created (0 for a key never removed): an identical object
	// uploaded again after a delete is a new input, not a repeat.
	Generation int `json:"generation,omitempty"`
	// Metadata is the object's user metadata (see PutOptions), where the
	// event's source carries it: fs and mem watches, S3 notification
	// records with userMetadata.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// UserMetadata normalises S3 user metadata to PutOptions' form: keys
// lowercased, without their x-amz-meta- prefix; other entries (system
// metadata such as content-type) are left out. Nil when there is none.
func UserMetadata(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		k = strings.ToLower(k)
		if name, ok := strings.CutPrefix(k, "x-amz-meta-"); ok && name != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = v
		}
	}
	return out
}

// Created reports whether the event is an object creation of any kind.
func (e ObjectEvent) Created() bool { return strings.HasPrefix(e.Name, "s3:ObjectCreated:") }

// Removed reports whether the event is an object removal of any kind.
func (e ObjectEvent) Removed() bool { return strings.HasPrefix(e.Name, "s3:ObjectRemoved:") }

// OpenFunc opens a driver from a parsed URL.
type OpenFunc func(ctx context.Context, u *url.URL) (Driver, error)

var openers = scheme.New[OpenFunc]("storage")

// Register makes a URL scheme available to Open; registering a scheme
// twice panics (a programming error found at start-up).
func Register(name string, open OpenFunc) { openers.Register(name, open) }

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string { return openers.Schemes() }

// Open opens the store a URL names, such as "fs://.sluice/buckets".
func Open(ctx context.Context, rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the URL: keep only its reason, and redact.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("storage url %q: %w", redact.URL(rawURL), err)
	}
	open, ok := openers.Lookup(u.Scheme)
	if !ok {
		return nil, fmt.Errorf("storage url %q: unknown scheme %q (known: %s)", redact.URL(rawURL), u.Scheme, strings.Join(Schemes(), ", "))
	}
	d, err := open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", u.Scheme, err)
	}
	return NewStore(d), nil
}

// URLPath returns the path a URL names: "fs://rel/dir", "fs:///abs/dir"
// and "fs:dir" all work.
func URLPath(u *url.URL) string { return scheme.Path(u) }
