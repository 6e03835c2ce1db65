package objects_test

import (
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
