package nodes_test

import (
	"errors"
	"image"
	"image/color"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// memStore returns a store with object photos/a.txt.
func memStore(t *testing.T) *storage.Store {
	t.Helper()
	s := storage.NewStore(storage.NewMem())
	require.NoError(t, s.EnsureBucket(t.Context(), "photos"))
	_, err := s.PutBytes(t.Context(), "photos", "a.txt", []byte("hello"), storage.PutOptions{ContentType: "text/plain"})
	require.NoError(t, err)
	return s
}

func TestBodyIsReadOnceFromTheObject(t *testing.T) {
	store := memStore(t)
	d := nodes.NewDelivery(store, 1<<20)
	env := d.Envelope()
	env.SetObject(storage.ObjectInfo{Bucket: "photos", Key: "a.txt"})

	b, err := env.Body(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	assert.Equal(t, "text/plain", env.BodyType())

	require.NoError(t, store.Delete(t.Context(), "photos", "a.txt"))
	b, err = env.Body(t.Context())
	require.NoError(t, err, "kept, not read again")
	assert.Equal(t, "hello", string(b))
	read, written := d.Bytes()
	assert.Equal(t, [2]int64{5, 0}, [2]int64{read, written}, "the object counted once")

	env.CountRead(10)
	env.CountWritten(7)
	read, written = d.Bytes()
	assert.Equal(t, [2]int64{15, 7}, [2]int64{read, written})

	// Pointing at another object drops the kept body; that one is gone.
	env.SetObject(storage.ObjectInfo{Bucket: "photos", Key: "a.txt"})
	_, err = env.Body(t.Context())
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.True(t, nodes.IsPermanent(err), "a missing object is bad input")
}

func TestBodyLimitsAndAbsence(t *testing.T) {
	store := memStore(t)
	env := nodes.NewDelivery(store, 4).Envelope()
	env.SetObject(storage.ObjectInfo{Bucket: "photos", Key: "a.txt"})
	_, err := env.Body(t.Context())
	assert.ErrorIs(t, err, storage.ErrTooLarge)
	assert.True(t, nodes.IsPermanent(err))

	b, err := nodes.NewDelivery(store, 0).Envelope().Body(t.Context())
	require.NoError(t, err)
	assert.Nil(t, b, "no object, no body")

	noStore := nodes.NewDelivery(nil, 0).Envelope()
	noStore.SetObject(storage.ObjectInfo{Bucket: "photos", Key: "a.txt"})
	_, err = noStore.Body(t.Context())
	assert.ErrorContains(t, err, "no storage to read photos/a.txt from")
	assert.False(t, nodes.IsPermanent(err))

	// A body set by a step wins over the object until the object changes.
	env = nodes.NewDelivery(store, 0).Envelope()
	env.SetBody([]byte(`{"a":1}`), "application/json")
	b, err = env.Body(t.Context())
	require.NoError(t, err)
	assert.Equal(t, `{"a":1}`, string(b))
	assert.Equal(t, "application/json", env.BodyType())
}

// countingEncoder encodes an image as its width in bytes, counting calls.
type countingEncoder struct {
	calls *int
	fail  bool
}

func (countingEncoder) Format() string { return "test" }

func (e countingEncoder) Encode(img image.Image) ([]byte, error) {
	*e.calls++
	if e.fail {
		return nil, errors.New("disk full")
	}
	return make([]byte, img.Bounds().Dx()), nil
}

func TestImageIsEncodedOnceWhenTheBodyIsRead(t *testing.T) {
	env := nodes.NewDelivery(nil, 0).Envelope()
	env.SetBody([]byte("original"), "image/jpeg")
	calls := 0
	enc := countingEncoder{calls: &calls}
	img := image.NewNRGBA(image.Rect(0, 0, 8, 4))
	img.Set(0, 0, color.White)

	// Decoded, unchanged: the body is still the original bytes.
	env.SetImage(img, enc, false)
	got, gotEnc, ok := env.Image()
	require.True(t, ok)
	assert.Same(t, img, got)
	assert.Equal(t, enc, gotEnc)
	b, err := env.Body(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "original", string(b))
	assert.Equal(t, "image/jpeg", env.BodyType())
	assert.Zero(t, calls)

	// Changed by two steps: encoded once, when the body is read.
	env.SetImage(image.NewNRGBA(image.Rect(0, 0, 6, 6)), enc, true)
	env.SetImage(image.NewNRGBA(image.Rect(0, 0, 3, 3)), enc, true)
	assert.Equal(t, "image/test", env.BodyType(), "the encoder's format before encoding")
	assert.Zero(t, calls, "nothing encoded before the body is read")
	b, err = env.Body(t.Context())
	require.NoError(t, err)
	assert.Len(t, b, 3, "the last image")
	_, err = env.Body(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, calls, "encoded once")
	assert.Equal(t, "image/test", env.BodyType())
	_, _, ok = env.Image()
	assert.True(t, ok, "the image is kept for later image steps")

	// SetBody drops the image.
	env.SetBody([]byte("other"), "text/plain")
	_, _, ok = env.Image()
	assert.False(t, ok)

	// An encoder failure is permanent: the same image fails the same way.
	env.SetImage(img, countingEncoder{calls: &calls, fail: true}, true)
	_, err = env.Body(t.Context())
	assert.ErrorContains(t, err, "encode test: disk full")
	assert.True(t, nodes.IsPermanent(err))
}

func TestDeliveryCollectsWhatStepsLeave(t *testing.T) {
	d := nodes.NewDelivery(nil, 0)
	env := d.Envelope()
	env.Flow, env.Run = "orders", "r-1"
	env.Event = nodes.Event{ID: "m-1", Topic: "orders", Time: time.Unix(0, 0)}
	env.Payload = map[string]any{"id": "o-1"}

	d.SetStep("check")
	env.SetResult(map[string]any{"ok": true})
	env.Emit(nodes.Output{Topic: "a", Payload: []byte("1")})
	env.Emit(nodes.Output{Topic: "b", Payload: []byte("2")})
	env.SetRoute(nodes.Route{Branch: "review"})
	env.Meter(nodes.Call{Kind: "function", Name: "score", Duration: time.Millisecond})
	env.SetLog("first")
	env.SetLog("second")
	env.SetResponse(nodes.Response{Status: 201})
	env.SetResponse(nodes.Response{Status: 202, Body: []byte("ok")})

	assert.Equal(t, map[string]any{"check": map[string]any{"ok": true}}, env.Steps, "filed under the current step")
	outs := d.Outputs()
	require.Len(t, outs, 2)
	assert.Equal(t, []string{"a", "b"}, []string{outs[0].Topic, outs[1].Topic}, "in emit order")

	r, ok := d.TakeRoute()
	assert.True(t, ok)
	assert.Equal(t, nodes.Route{Branch: "review"}, r)
	_, ok = d.TakeRoute()
	assert.False(t, ok, "taking clears it")

	assert.Equal(t, []nodes.Call{{Kind: "function", Name: "score", Duration: time.Millisecond}}, d.TakeCalls())
	assert.Empty(t, d.TakeCalls(), "taking clears them")
	assert.Equal(t, "second", d.TakeLog(), "the last log wins")
	assert.Empty(t, d.TakeLog())

	res, ok := d.Response()
	assert.True(t, ok)
	assert.Equal(t, 202, res.Status, "the last response wins")

	v := env.Vars()
	assert.Equal(t, "orders", v.Flow)
	// Event and object are built when an expression names them.
	assert.Equal(t, map[string]any{"id": "m-1", "name": "", "topic": "orders", "time": time.Unix(0, 0)}, v.Event.(eval.Lazy).Value())
	assert.Nil(t, v.Object)
	env.SetObject(storage.ObjectInfo{Bucket: "photos", Key: "a.jpg", Size: 3})
	assert.Equal(t, map[string]any{"bucket": "photos", "key": "a.jpg", "size": int64(3), "etag": "", "content_type": ""}, env.Vars().Object.(eval.Lazy).Value(),
		"the object as expressions see it follows SetObject")
	for src, want := range map[string]any{`event.topic`: "orders", `object.key`: "a.jpg", `$env.event.id`: "m-1", `flow`: "orders"} {
		p, err := eval.Compile(src, false)
		require.NoError(t, err)
		got, err := p.Eval(env.Vars())
		require.NoError(t, err)
		assert.Equal(t, want, got, src)
	}
}

func TestSetPayloadField(t *testing.T) {
	env := nodes.NewDelivery(nil, 0).Envelope()
	require.NoError(t, env.SetPayloadField("a", 1))
	assert.Equal(t, map[string]any{"a": 1}, env.Payload, "an empty payload becomes an object")
	require.NoError(t, env.SetPayloadField("b", 2))
	assert.Equal(t, map[string]any{"a": 1, "b": 2}, env.Payload)
	j, err := env.PayloadJSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":1,"b":2}`, string(j))

	env.Payload = []any{1.0}
	err = env.SetPayloadField("a", 1)
	assert.True(t, nodes.IsPermanent(err), "nothing can be stored in a list: %v", err)
}

func TestPermanentErrors(t *testing.T) {
	base := errors.New("bad input")
	p := nodes.Permanent(base)
	assert.True(t, nodes.IsPermanent(p))
	assert.ErrorIs(t, p, base, "still the error it wraps")
	assert.Equal(t, p, nodes.Permanent(p), "marking twice changes nothing")
	assert.NoError(t, nodes.Permanent(nil))
	assert.False(t, nodes.IsPermanent(base))

	for _, err := range []error{storage.ErrNotFound, storage.ErrBucketNotFound, storage.ErrInvalidKey, storage.ErrInvalidBucket, storage.ErrTooLarge} {
		assert.True(t, nodes.IsPermanent(nodes.StorageError(err)), "%v", err)
	}
	assert.False(t, nodes.IsPermanent(nodes.StorageError(errors.New("connection reset"))), "I/O is transient")
}
