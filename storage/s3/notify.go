package s3

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/notification"

	"github.com/sluicehq/sluice/storage"
)

// Receiver is the webhook endpoint MinIO (or a relay of S3/COS records)
// posts bucket notifications to. `sluice run` serves it at /hooks/s3 on its
// listener. It answers 200 once every event of the request was handed to
// the watchers of its bucket (events of buckets nobody watches are
// dropped), and 503 while no bucket is watched yet, so a sender with a
// retry queue (MinIO's queue_dir) redelivers what was not taken.
type Receiver struct {
	token string
	// confirm, when set, checks a posted event against the bucket: a
	// created object's size and etag are read from the bucket, a removed
	// one must be gone. An event it refuses is dropped.
	confirm func(ctx context.Context, ev storage.ObjectEvent) (storage.ObjectEvent, bool)

	mu       sync.Mutex
	watchers map[string][]chan<- storage.ObjectEvent
}

// NewReceiver returns a receiver; a non-empty token must come as
// "Authorization: Bearer <token>".
func NewReceiver(token string) *Receiver {
	return &Receiver{token: token, watchers: map[string][]chan<- storage.ObjectEvent{}}
}

// maxNotification bounds a notification request body.
const maxNotification = 4 << 20

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST notifications here", http.StatusMethodNotAllowed)
		return
	}
	if rc.token != "" {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(rc.token)) != 1 {
			http.Error(w, "bad or missing bearer token", http.StatusUnauthorized)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxNotification))
	if err != nil {
		http.Error(w, "notification too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	events, err := storage.ParseEvents(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	watching := len(rc.watchers) > 0
	rc.mu.Unlock()
	if !watching && len(events) > 0 {
		// Still starting: refuse, so a sender with a queue (MinIO's
		// queue_dir) delivers it again rather than it being lost.
		w.Header().Set("Retry-After", "1")
		http.Error(w, "not watching any bucket yet", http.StatusServiceUnavailable)
		return
	}
	for _, ev := range events {
		if rc.confirm != nil {
			var ok bool
			if ev, ok = rc.confirm(r.Context(), ev); !ok {
				continue
			}
		}
		rc.mu.Lock()
		ws := append([]chan<- storage.ObjectEvent(nil), rc.watchers[ev.Bucket]...)
		rc.mu.Unlock()
		for _, ch := range ws {
			select {
			case ch <- ev:
			case <-r.Context().Done():
				http.Error(w, "not delivered", http.StatusServiceUnavailable)
				return
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (rc *Receiver) add(bucket string, ch chan<- storage.ObjectEvent) func() {
	rc.mu.Lock()
	rc.watchers[bucket] = append(rc.watchers[bucket], ch)
	rc.mu.Unlock()
	return func() {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		ws := rc.watchers[bucket]
		for i, w := range ws {
			if w == ch {
				rc.watchers[bucket] = append(ws[:i:i], ws[i+1:]...)
				return
			}
		}
	}
}

// Receiver returns the driver's webhook receiver.
func (d *Driver) Receiver() *Receiver { return d.receiver }

// WebhookHandler implements storage.WebhookReceiver: the driver's Receiver.
func (d *Driver) WebhookHandler() http.Handler { return d.receiver }

// Watch implements storage.Watcher. It reports every object present when
// it starts (and again every reconcile interval, so events lost while
// Sluice or the network was down are caught up; receivers de-duplicate by
// bucket, key and etag), then the bucket's notifications: those the
// receiver gets (webhook, the default), or, with notify=listen, those of
// MinIO's listen API. With notify_arn set it first adds a rule sending the
// bucket's created and removed events to that target.
func (d *Driver) Watch(ctx context.Context, bucket string, events chan<- storage.ObjectEvent) error {
	if d.listen {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		listenErr := make(chan error, 1)
		go func() { listenErr <- d.listenEvents(ctx, bucket, events); cancel() }()
		err := d.reconcileLoop(ctx, bucket, events)
		if lerr := <-listenErr; lerr != nil && !errors.Is(lerr, context.Canceled) {
			return lerr
		}
		return err
	}
	remove := d.receiver.add(bucket, events)
	defer remove()
	if d.notifyARN != "" {
		if err := d.ensureRule(ctx, bucket); err != nil {
			return err
		}
	}
	return d.reconcileLoop(ctx, bucket, events)
}

// reconcileLoop lists the bucket now and every reconcile interval.
func (d *Driver) reconcileLoop(ctx context.Context, bucket string, events chan<- storage.ObjectEvent) error {
	var tick <-chan time.Time
	if d.reconcile > 0 {
		t := time.NewTicker(d.reconcile)
		defer t.Stop()
		tick = t.C
	}
	for {
		err := d.List(ctx, bucket, "", func(o storage.ObjectInfo) error {
			ev := storage.ObjectEvent{Name: storage.EventCreatedExisting, Bucket: bucket, Key: o.Key, Size: o.Size,
				ETag: o.ETag, ContentType: o.ContentType, Time: o.Modified, Source: "s3-list"}
			select {
			case events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
		}
	}
}

// listenEvents forwards the bucket's events from MinIO's listen API (a
// MinIO extension; not durable: events while nobody listens are not kept,
// which the reconcile listing catches up). It returns when the stream
// fails or ctx ends.
func (d *Driver) listenEvents(ctx context.Context, bucket string, events chan<- storage.ObjectEvent) error {
	for info := range d.c.ListenBucketNotification(ctx, bucket, "", "", []string{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}) {
		if info.Err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("listen to %s: %w", bucket, mapErr(bucket, "", info.Err))
		}
		for _, rec := range info.Records {
			ev, ok := listenEvent(rec)
			if !ok {
				continue
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return ctx.Err()
}

// listenEvent normalizes a listen-stream record. Unlike notification
// targets' records, listen streams carry keys unescaped.
func listenEvent(e notification.Event) (storage.ObjectEvent, bool) {
	t, _ := time.Parse(time.RFC3339Nano, e.EventTime)
	ev := storage.ObjectEvent{
		Name: storage.NormalizeEventName(e.EventName), Bucket: e.S3.Bucket.Name, Key: e.S3.Object.Key, Size: e.S3.Object.Size,
		ETag: strings.Trim(e.S3.Object.ETag, `"`), ContentType: e.S3.Object.ContentType,
		VersionID: e.S3.Object.VersionID, Time: t.UTC(), Source: "minio-listen", Metadata: storage.UserMetadata(e.S3.Object.UserMetadata),
	}
	if ev.Removed() && ev.ETag == "" && e.S3.Object.Sequencer != "" {
		ev.ETag = "seq-" + e.S3.Object.Sequencer // as ParseEvents does
	}
	return ev, ev.Bucket != "" && ev.Key != ""
}

// ensureRule adds a queue configuration for the ARN to the bucket's
// notification configuration, keeping the rules already there.
func (d *Driver) ensureRule(ctx context.Context, bucket string) error {
	arn, err := notification.NewArnFromString(d.notifyARN)
	if err != nil {
		return fmt.Errorf("notify_arn %q: %w", d.notifyARN, err)
	}
	cfg, err := d.c.GetBucketNotification(ctx, bucket)
	if err != nil {
		return mapErr(bucket, "", err)
	}
	for _, q := range cfg.QueueConfigs {
		if q.Queue == d.notifyARN {
			return nil
		}
	}
	qc := notification.NewConfig(arn)
	qc.AddEvents(notification.ObjectCreatedAll, notification.ObjectRemovedAll)
	if !cfg.AddQueue(qc) {
		return fmt.Errorf("bucket %s: a conflicting notification rule exists for %s", bucket, d.notifyARN)
	}
	if err := d.c.SetBucketNotification(ctx, bucket, cfg); err != nil {
		return fmt.Errorf("set notification rule on %s: %w", bucket, mapErr(bucket, "", err))
	}
	return nil
}

var (
	_ storage.Watcher         = (*Driver)(nil)
	_ storage.WebhookReceiver = (*Driver)(nil)
	_ http.Handler            = (*Receiver)(nil)
)

// confirmEvent checks a posted event against the bucket, so a forged or
// stale notification cannot make a flow run on what is not there: a
// created object's size, etag and type are the bucket's (an etag that
// was already seen is then a repeat), a removed object must be gone.
func (d *Driver) confirmEvent(ctx context.Context, ev storage.ObjectEvent) (storage.ObjectEvent, bool) {
	st, err := d.c.StatObject(ctx, ev.Bucket, ev.Key, minio.StatObjectOptions{})
	if err != nil {
		err = mapErr(ev.Bucket, ev.Key, err)
	}
	switch {
	case ev.Created() && err == nil:
		o := info(ev.Bucket, st)
		ev.Size, ev.ETag, ev.ContentType = o.Size, o.ETag, o.ContentType
		if m := userMetadata(st.UserMetadata); m != nil {
			ev.Metadata = m // the object's, whatever the record carried
		}
		return ev, true
	case ev.Removed() && errors.Is(err, storage.ErrNotFound):
		return ev, true
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		// Cannot tell now: keep the event; the bridge's reconciliation
		// listing corrects what it got wrong.
		return ev, true
	}
	return ev, false
}
