package objects_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
	_ "github.com/sluicehq/sluice/nodes/objects"
	"github.com/sluicehq/sluice/storage"
)

func TestGetAndPut(t *testing.T) {
	ctx := t.Context()
	store := storage.NewStore(storage.NewMem())
	for _, b := range []string{"configs", "out"} {
		require.NoError(t, store.EnsureBucket(ctx, b))
	}
	_, err := store.PutBytes(ctx, "configs", "acme.json", []byte(`{"plan":"gold"}`), storage.PutOptions{})
	require.NoError(t, err)
	deps := nodes.Deps{Store: store}

	d := nodes.NewDelivery(store, 1<<20)
	env := d.Envelope()
	env.Payload = map[string]any{"customer": "acme"}
	d.SetStep("cfg")
	get := nodestest.New(t, "storage.get", `{bucket: configs, key: "{{ payload.customer }}.json", as: payload}`, deps)
	require.NoError(t, get.Process(ctx, env))
	assert.Equal(t, map[string]any{"plan": "gold"}, env.Payload)
	assert.Equal(t, "acme.json", env.Steps["cfg"].(map[string]any)["key"])

	d.SetStep("save")
	put := nodestest.New(t, "storage.put", `{bucket: out, key: "copies/{{ payload.plan }}.json", content: payload}`, deps)
	require.NoError(t, put.Process(ctx, env))
	data, info, err := store.ReadAll(ctx, "out", "copies/gold.json", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `{"plan":"gold"}`, string(data))
	assert.Equal(t, "application/json", info.ContentType)

	// storage.get as body is lazy: it points the envelope at the object.
	env = nodestest.Envelope(store, 1<<20, "load")
	require.NoError(t, nodestest.New(t, "storage.get", `{bucket: configs, key: acme.json}`, deps).Process(ctx, env))
	body, err := env.Body(ctx)
	require.NoError(t, err)
	assert.Equal(t, `{"plan":"gold"}`, string(body))

	// Missing objects and oversized ones are permanent errors.
	env = nodes.NewEnvelope(store, 1<<20)
	err = nodestest.New(t, "storage.get", `{bucket: configs, key: nope.json}`, deps).Process(ctx, env)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorIs(t, err, storage.ErrNotFound)
	err = nodestest.New(t, "storage.get", `{bucket: configs, key: acme.json, max_bytes: 3}`, deps).Process(ctx, env)
	assert.ErrorIs(t, err, storage.ErrTooLarge)
	// No triggering object and no key: a clear, permanent error.
	err = nodestest.New(t, "storage.put", `{bucket: out}`, deps).Process(ctx, nodes.NewEnvelope(store, 0))
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "{{ object?.key }} is missing")
	// A key that escapes the bucket is refused.
	env = nodes.NewEnvelope(store, 0)
	env.Payload = map[string]any{"name": "../../etc/passwd"}
	env.SetBody([]byte("x"), "")
	err = nodestest.New(t, "storage.put", `{bucket: out, key: "{{ payload.name }}"}`, deps).Process(ctx, env)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorIs(t, err, storage.ErrInvalidKey)
}

func TestCopyDeleteList(t *testing.T) {
	ctx := t.Context()
	store := storage.NewStore(storage.NewMem())
	for _, b := range []string{"inbox", "archive"} {
		require.NoError(t, store.EnsureBucket(ctx, b))
	}
	for _, k := range []string{"day-1/b.csv", "day-1/a.csv", "day-2/c.csv"} {
		_, err := store.PutBytes(ctx, "inbox", k, []byte("rows of "+k), storage.PutOptions{})
		require.NoError(t, err)
	}
	deps := nodes.Deps{Store: store}
	var d *nodes.Delivery // of the last envelope triggered made
	triggered := func() *nodes.Envelope {
		d = nodes.NewDelivery(store, 1<<20)
		env := d.Envelope()
		info, err := store.Stat(ctx, "inbox", "day-1/a.csv")
		require.NoError(t, err)
		env.SetObject(info)
		d.SetStep("s")
		return env
	}

	// storage.copy defaults to the triggering object and keeps the key.
	env := triggered()
	require.NoError(t, nodestest.New(t, "storage.copy", `{to_bucket: archive}`, deps).Process(ctx, env))
	assert.Equal(t, "archive", env.Steps["s"].(map[string]any)["bucket"])
	data, _, err := store.ReadAll(ctx, "archive", "day-1/a.csv", 0)
	require.NoError(t, err)
	assert.Equal(t, "rows of day-1/a.csv", string(data))
	_, w := d.Bytes()
	assert.EqualValues(t, len(data), w)
	// to_key alone: the same bucket.
	env = triggered()
	require.NoError(t, nodestest.New(t, "storage.copy", `{to_key: "done/{{ object.key }}"}`, deps).Process(ctx, env))
	_, err = store.Stat(ctx, "inbox", "done/day-1/a.csv")
	require.NoError(t, err)
	// Nothing to copy to is a config error at its position; a missing source a permanent one.
	_, err = nodestest.Build("storage.copy", `{bucket: inbox}`, deps)
	assert.ErrorContains(t, err, `set "to_bucket" or "to_key"`)
	err = nodestest.New(t, "storage.copy", `{bucket: inbox, key: nope, to_bucket: archive}`, deps).Process(ctx, triggered())
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorIs(t, err, storage.ErrNotFound)

	// storage.list into the payload, in key order, limited.
	env = triggered()
	env.Payload = map[string]any{"day": "day-1"}
	require.NoError(t, nodestest.New(t, "storage.list", `{prefix: "{{ payload.day }}/"}`, deps).Process(ctx, env))
	objs := env.Payload.(map[string]any)["objects"].([]any)
	require.Len(t, objs, 2)
	assert.Equal(t, "day-1/a.csv", objs[0].(map[string]any)["key"])
	assert.Equal(t, "day-1/b.csv", objs[1].(map[string]any)["key"])
	assert.NotEmpty(t, objs[0].(map[string]any)["modified"])
	assert.Equal(t, map[string]any{"bucket": "inbox", "prefix": "day-1/", "count": 2, "truncated": false}, env.Steps["s"])
	env = triggered()
	require.NoError(t, nodestest.New(t, "storage.list", `{bucket: inbox, limit: 2, field: files}`, deps).Process(ctx, env))
	assert.Len(t, env.Payload.(map[string]any)["files"], 2)
	assert.Equal(t, true, env.Steps["s"].(map[string]any)["truncated"])
	// ... or fanned out as messages, queued until the run succeeds.
	env = triggered()
	env.Meta["tenant"] = "acme"
	require.NoError(t, nodestest.New(t, "storage.list", `{bucket: inbox, prefix: day-, output: messages, topic: "files.{{ object.bucket }}"}`, deps).Process(ctx, env))
	outs := d.Outputs()
	require.Len(t, outs, 3)
	assert.Equal(t, "files.inbox", outs[0].Topic)
	assert.JSONEq(t, `"day-2/c.csv"`, jsonField(t, outs[2].Payload, "key"))
	assert.Equal(t, "acme", outs[0].Meta["tenant"])
	_, err = nodestest.Build("storage.list", `{bucket: inbox, output: messages}`, deps)
	assert.ErrorContains(t, err, `field "topic": required with output: messages`)
	_, err = nodestest.Build("storage.list", `{bucket: inbox, topic: t}`, deps)
	assert.ErrorContains(t, err, `only used with output: messages`)
	err = nodestest.New(t, "storage.list", `{bucket: no-such-bucket}`, deps).Process(ctx, triggered())
	assert.ErrorIs(t, err, storage.ErrBucketNotFound)
	assert.True(t, nodes.IsPermanent(err))
	// A payload that is not an object cannot hold the list.
	env = triggered()
	env.Payload = "text"
	assert.True(t, nodes.IsPermanent(nodestest.New(t, "storage.list", `{}`, deps).Process(ctx, env)))

	// storage.delete: the triggering object by default; again is fine.
	del := nodestest.New(t, "storage.delete", ``, deps)
	env = triggered()
	require.NoError(t, del.Process(ctx, env))
	assert.Equal(t, map[string]any{"bucket": "inbox", "key": "day-1/a.csv", "existed": true}, env.Steps["s"])
	_, err = store.Stat(ctx, "inbox", "day-1/a.csv")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	env = triggered2(t, store)
	require.NoError(t, del.Process(ctx, env))
	assert.Equal(t, false, env.Steps["s"].(map[string]any)["existed"])
	err = nodestest.New(t, "storage.delete", `{bucket: no-such-bucket, key: k}`, deps).Process(ctx, env)
	assert.ErrorIs(t, err, storage.ErrBucketNotFound)
}

// triggered2 is an envelope whose triggering object is gone already.
func triggered2(t *testing.T, store *storage.Store) *nodes.Envelope {
	env := nodestest.Envelope(store, 0, "s")
	env.SetObject(storage.ObjectInfo{Bucket: "inbox", Key: "day-1/a.csv"})
	return env
}

func jsonField(t *testing.T, data []byte, field string) string {
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &m))
	return string(m[field])
}

func TestPresignNeedsS3(t *testing.T) {
	store := storage.NewStore(storage.NewMem())
	_, err := nodestest.Build("storage.presign", `{bucket: b, key: k}`, nodes.Deps{Store: store})
	assert.ErrorContains(t, err, "presigned URLs need s3:// storage")
	_, err = nodestest.Build("storage.presign", `{bucket: b, key: k, expires: 200h}`, nodes.Deps{})
	assert.ErrorContains(t, err, `field "expires": 200h0m0s is outside 1s to 168h`)
	// Without storage (sluice validate) the rest of the node is checked.
	_, err = nodestest.Build("storage.presign", `{bucket: b, key: k, method: DELETE}`, nodes.Deps{})
	assert.ErrorContains(t, err, `"DELETE" is not one of GET, PUT`)
}
