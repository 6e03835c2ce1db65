package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"time"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/storage"
)

// Envelope is one message as it travels through a flow's steps. The engine
// makes one per delivery; steps run one after another on it, so it needs no
// locking. A node must not keep it after Process returns.
//
// The input is acked only after every step succeeded and every Output was
// published; outputs are published in the order they were emitted.
type Envelope struct {
	Payload any               // decoded JSON; nil for an empty message
	Meta    map[string]string // message metadata, carried to outputs
	Object  *storage.ObjectInfo
	Event   Event
	Flow    string
	Run     string
	// Request describes the HTTP request of an HTTP-triggered run (method,
	// path, params, query, headers), for expressions; nil otherwise.
	Request map[string]any
	// Steps holds each finished step's result by step id, for expressions
	// (steps.save.key). Nodes set their result with SetResult.
	Steps map[string]any

	store   *storage.Store
	maxBody int64

	body       []byte
	bodyLoaded bool
	bodyType   string

	img      image.Image
	imgEnc   ImageEncoder
	imgDirty bool // changed since decoding: the body is stale

	outputs  []Output
	wrote    []string // objects written (bucket/key) since TakeWrites
	route    *Route
	response *Response
	bytesIn  int64 // object bytes read
	bytesOut int64 // bytes nodes wrote out (objects)
	step     string
	attempt  int    // 1-based attempt of the current step, 0 when the engine does not say
	calls    []Call // metered calls of the current step attempt
	log      string // diagnostic text of the current step attempt

	// Built once: the object and event as expressions see them.
	objectVar map[string]any
	eventVar  map[string]any
	// flowVar and runVar are Flow and Run boxed for expressions (once,
	// not per evaluation), as of flowOf and runOf.
	flowVar, runVar any
	flowOf, runOf   string
	varsOf          *storage.ObjectInfo
}

// Event describes what triggered the run.
type Event struct {
	ID    string    `json:"id"`    // the broker message id
	Name  string    `json:"name"`  // the bucket event name, for bucket triggers
	Topic string    `json:"topic"` // the topic the message came from
	Time  time.Time `json:"time"`
}

// Output is a message a step asks to publish when the run succeeds.
type Output struct {
	Topic   string
	Payload []byte
	Meta    map[string]string
}

// Route is a step's decision on the rest of the run: run a branch, or
// publish to a topic and stop, or (End) stop here, the run succeeding
// without its later steps. Zero means "go on with the next step".
type Route struct {
	Branch string
	Topic  string
	End    bool
}

// NewEnvelope returns an envelope whose body, when asked for, is read
// from store (object reference) within maxBody bytes. The engine makes
// envelopes with NewDelivery, which keeps its own handle on them; a bare
// envelope serves tests of nodes that need no engine side.
func NewEnvelope(store *storage.Store, maxBody int64) *Envelope {
	return &Envelope{Meta: map[string]string{}, Steps: make(map[string]any, 4), store: store, maxBody: maxBody}
}

// Vars returns the variables expressions see. The event and object maps
// are built when an expression first names them (eval.Lazy), then kept.
func (e *Envelope) Vars() eval.Vars {
	if e.flowVar == nil || e.flowOf != e.Flow {
		e.flowVar, e.flowOf = e.Flow, e.Flow
	}
	if e.runVar == nil || e.runOf != e.Run {
		e.runVar, e.runOf = e.Run, e.Run
	}
	v := eval.Vars{Payload: e.Payload, Meta: e.Meta, Steps: e.Steps, Flow: e.flowVar, Run: e.runVar, Event: eventVar{e}}
	if e.Request != nil {
		v.Request = e.Request
	}
	if e.Object != nil {
		v.Object = objectVar{e}
	}
	return v
}

// eventVar and objectVar are the envelope's event and object as
// expressions see them, built on first use (one pointer: an interface
// holds them without allocating).
type (
	eventVar  struct{ e *Envelope }
	objectVar struct{ e *Envelope }
)

// Value implements eval.Lazy.
func (v eventVar) Value() any {
	e := v.e
	if e.eventVar == nil {
		e.eventVar = map[string]any{"id": e.Event.ID, "name": e.Event.Name, "topic": e.Event.Topic, "time": e.Event.Time}
	}
	return e.eventVar
}

// Value implements eval.Lazy.
func (v objectVar) Value() any {
	e := v.e
	if e.Object != e.varsOf {
		e.objectVar, e.varsOf = nil, e.Object
		if e.Object != nil {
			e.objectVar = ObjectMap(*e.Object)
		}
	}
	if e.objectVar == nil {
		return nil
	}
	return e.objectVar
}

// ObjectMap is an object's description as expressions see it: bucket,
// key, size, etag, content_type.
func ObjectMap(o storage.ObjectInfo) map[string]any {
	return map[string]any{
		"bucket": o.Bucket, "key": o.Key, "size": o.Size,
		"etag": o.ETag, "content_type": o.ContentType,
	}
}

// SetResult records the current step's result for later expressions; use
// JSON-like values (maps, slices, strings, numbers), as expressions address
// them by key.
func (e *Envelope) SetResult(v any) { e.Steps[e.step] = v }

// Store returns the storage the envelope loads objects from.
func (e *Envelope) Store() *storage.Store { return e.store }

// Body returns the message body: bytes set by a step, else the object's
// content (read once, then kept), else nil. A changed image is encoded
// here, once, in its format.
func (e *Envelope) Body(ctx context.Context) ([]byte, error) {
	if e.imgDirty {
		b, err := e.encodeImage()
		if err != nil {
			return nil, Permanent(err)
		}
		e.body, e.bodyLoaded, e.imgDirty = b, true, false
		e.bodyType = "image/" + e.imgEnc.Format()
		return e.body, nil
	}
	if e.bodyLoaded {
		return e.body, nil
	}
	if e.Object == nil {
		return nil, nil
	}
	if e.store == nil {
		return nil, fmt.Errorf("no storage to read %s/%s from", e.Object.Bucket, e.Object.Key)
	}
	b, info, err := e.store.ReadAll(ctx, e.Object.Bucket, e.Object.Key, e.maxBody)
	if err != nil {
		return nil, StorageError(err)
	}
	e.body, e.bodyLoaded, e.bodyType = b, true, info.ContentType
	e.bytesIn += int64(len(b))
	return b, nil
}

// BodyWithin is Body with a tighter limit for an object body not yet
// loaded: an object over limit bytes (when limit > 0) fails with
// storage.ErrTooLarge from its size alone, or after reading limit+1 bytes
// when its size was wrong, never read whole. A body already in memory
// over the limit fails the same way.
func (e *Envelope) BodyWithin(ctx context.Context, limit int64) ([]byte, error) {
	if limit <= 0 || e.imgDirty || e.bodyLoaded || e.Object == nil || (e.maxBody > 0 && e.maxBody <= limit) {
		b, err := e.Body(ctx)
		if err == nil && limit > 0 && int64(len(b)) > limit {
			return nil, Permanent(fmt.Errorf("%s is %d bytes, over the %d byte limit: %w", e.bodyName(), len(b), limit, storage.ErrTooLarge))
		}
		return b, err
	}
	saved := e.maxBody
	e.maxBody = limit
	defer func() { e.maxBody = saved }()
	return e.Body(ctx)
}

// Head returns the first n bytes of the body and the body's full size,
// without loading an object body not yet loaded: for readers of headers.
func (e *Envelope) Head(ctx context.Context, n int64) ([]byte, int64, error) {
	if e.imgDirty || e.bodyLoaded || e.Object == nil || e.store == nil {
		b, err := e.Body(ctx)
		if err != nil {
			return nil, 0, err
		}
		return b[:min(int64(len(b)), n)], int64(len(b)), nil
	}
	r, info, err := e.store.NewReader(ctx, e.Object.Bucket, e.Object.Key)
	if err != nil {
		return nil, 0, StorageError(err)
	}
	defer r.Close()
	head, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", e.bodyName(), err)
	}
	e.bytesIn += int64(len(head))
	return head, max(info.Size, int64(len(head))), nil
}

func (e *Envelope) bodyName() string {
	if e.Object != nil {
		return e.Object.Bucket + "/" + e.Object.Key
	}
	return "the message body"
}

// BodyType is the content type of the body, if known.
func (e *Envelope) BodyType() string {
	if e.imgDirty {
		return "image/" + e.imgEnc.Format()
	}
	return e.bodyType
}

// SetBody replaces the body; a decoded image is dropped.
func (e *Envelope) SetBody(b []byte, contentType string) {
	e.body, e.bodyLoaded, e.bodyType = b, true, contentType
	e.img, e.imgEnc, e.imgDirty = nil, nil, false
}

// SetObject points the envelope at an object; its body is loaded lazily.
func (e *Envelope) SetObject(info storage.ObjectInfo) {
	e.Object = &info
	e.body, e.bodyLoaded, e.bodyType = nil, false, ""
	e.img, e.imgEnc, e.imgDirty = nil, nil, false
}

// ImageEncoder writes a kept image as bytes. The image nodes provide it:
// it carries the output format and its options.
type ImageEncoder interface {
	// Format names what Encode writes: "jpeg", "png", "gif".
	Format() string
	Encode(img image.Image) ([]byte, error)
}

// Image returns the decoded image kept by an earlier image step and the
// encoder that will write it.
func (e *Envelope) Image() (img image.Image, enc ImageEncoder, ok bool) {
	return e.img, e.imgEnc, e.img != nil
}

// SetImage keeps a decoded image for the next image steps. changed says the
// image (or its encoding) differs from the body, which is then encoded
// with enc when next read, once.
func (e *Envelope) SetImage(img image.Image, enc ImageEncoder, changed bool) {
	e.img, e.imgEnc = img, enc
	if changed {
		e.imgDirty = true
	}
}

func (e *Envelope) encodeImage() ([]byte, error) {
	b, err := e.imgEnc.Encode(e.img)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.imgEnc.Format(), err)
	}
	return b, nil
}

// CountRead and CountWritten add to the bytes a run read and wrote, for
// the run ledger and `sluice usage`; nodes doing their own I/O (objects
// written, files fetched) report it. The body of the triggering object is
// counted already.
func (e *Envelope) CountRead(n int64)    { e.bytesIn += n }
func (e *Envelope) CountWritten(n int64) { e.bytesOut += n }

// Response is what an HTTP-triggered run answers (set by a respond step).
type Response struct {
	Status      int
	Headers     map[string]string
	ContentType string
	Body        []byte
}

// SetResponse sets the HTTP response of the run; the last call wins.
func (e *Envelope) SetResponse(r Response) { e.response = &r }

// Wrote records that the step wrote the object bucket/key: the run
// record lists it with the step (what a run wrote, for people and
// lineage). Nodes that write objects call it after each write.
func (e *Envelope) Wrote(bucket, key string) { e.wrote = append(e.wrote, bucket+"/"+key) }

// Emit queues a message for publishing after the run succeeds.
func (e *Envelope) Emit(o Output) { e.outputs = append(e.outputs, o) }

// SetRoute records a switch decision; the engine acts on it after the step.
func (e *Envelope) SetRoute(r Route) { e.route = &r }

// SetPayloadField stores v in the payload's field name, making the payload
// an object if it is empty. A payload that is not an object is a
// permanent error: nothing can be stored in it.
func (e *Envelope) SetPayloadField(name string, v any) error {
	switch p := e.Payload.(type) {
	case nil:
		e.Payload = map[string]any{name: v}
	case map[string]any:
		p[name] = v
	default:
		return Permanent(fmt.Errorf("cannot store %s in a payload that is %T, not an object", name, p))
	}
	return nil
}

// PayloadJSON encodes the payload (null for nil).
func (e *Envelope) PayloadJSON() ([]byte, error) { return json.Marshal(e.Payload) }

// StorageError marks storage errors that no retry fixes (a missing object
// or bucket, an invalid key, an object over a size limit, an operation the
// driver does not support) as permanent; others (I/O, network) stay
// transient.
func StorageError(err error) error {
	for _, p := range []error{storage.ErrNotFound, storage.ErrBucketNotFound, storage.ErrInvalidKey, storage.ErrInvalidBucket, storage.ErrTooLarge, storage.ErrNotSupported} {
		if errors.Is(err, p) {
			return Permanent(err)
		}
	}
	return err
}
