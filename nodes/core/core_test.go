package core_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/core"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// envWith returns the envelope a node sees and the engine's delivery of it.
func envWith(t *testing.T, payload string) (*nodes.Envelope, *nodes.Delivery) {
	t.Helper()
	d := nodes.NewDelivery(nil, 0)
	env := d.Envelope()
	require.NoError(t, json.Unmarshal([]byte(payload), &env.Payload))
	env.Flow, env.Run = "f", "r-1"
	return env, d
}

func TestTransform(t *testing.T) {
	for _, tc := range []struct {
		name, with, in, want string
	}{
		{"set nested and computed", `{set: {total: "payload.qty * payload.price", "customer.tier": '"gold"'}}`,
			`{"qty":2,"price":3}`, `{"qty":2,"price":3,"total":6,"customer":{"tier":"gold"}}`},
		{"set sees the payload before the step", `{set: {a: "payload.b", b: "payload.a"}}`, `{"a":1,"b":2}`, `{"a":2,"b":1}`},
		{"delete nested", `{delete: [secret, "user.password", "no.such"]}`, `{"secret":1,"user":{"name":"x","password":"y"}}`, `{"user":{"name":"x"}}`},
		{"replace then set", `{payload: '{"id": payload.order.id}', set: {ok: "true"}}`, `{"order":{"id":"o-1"}}`, `{"id":"o-1","ok":true}`},
		{"set on null payload", `{set: {x: "1"}}`, `null`, `{"x":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodestest.New(t, "transform", tc.with, nodes.Deps{})
			env, _ := envWith(t, tc.in)
			require.NoError(t, n.Process(t.Context(), env))
			got, _ := json.Marshal(env.Payload)
			assert.JSONEq(t, tc.want, string(got))
		})
	}
	_, err := nodestest.Build("transform", `{}`, nodes.Deps{})
	assert.ErrorContains(t, err, `set at least one of "payload", "set" or "delete"`)

	n := nodestest.New(t, "transform", `{set: {x: "1"}}`, nodes.Deps{})
	env, _ := envWith(t, `[1,2]`)
	err = n.Process(t.Context(), env)
	assert.True(t, nodes.IsPermanent(err), "setting fields on a list is bad input: %v", err)
}

func TestSwitch(t *testing.T) {
	n := nodestest.New(t, "switch", `
cases:
  - when: payload.total > 1000
    branch: review
  - when: payload.status == "cancelled"
    topic: cancellations
default: {branch: normal}`, nodes.Deps{})
	for in, want := range map[string]nodes.Route{
		`{"total": 5000}`:                        {Branch: "review"},
		`{"total": 5000, "status": "cancelled"}`: {Branch: "review"}, // first match wins
		`{"total": 10, "status": "cancelled"}`:   {Topic: "cancellations"},
		`{"total": 10}`:                          {Branch: "normal"},
	} {
		env, d := envWith(t, in)
		require.NoError(t, n.Process(t.Context(), env))
		got, ok := d.TakeRoute()
		require.True(t, ok)
		assert.Equal(t, want, got, in)
	}

	noDefault := nodestest.New(t, "switch", `{cases: [{when: "payload.x == 1", topic: one}]}`, nodes.Deps{})
	env, d := envWith(t, `{"x": 2}`)
	require.NoError(t, noDefault.Process(t.Context(), env))
	_, routed := d.TakeRoute()
	assert.False(t, routed, "no case and no default: go on")

	_, err := nodestest.Build("switch", `{cases: [{when: "true", branch: a, topic: b}]}`, nodes.Deps{})
	assert.ErrorContains(t, err, `set exactly one of "branch" or "topic"`)
	_, err = nodestest.Build("switch", `{cases: []}`, nodes.Deps{})
	assert.ErrorContains(t, err, "needs at least one case")
}

func TestPublish(t *testing.T) {
	n := nodestest.New(t, "publish", `
topics: [a, b]
payload: '{"id": payload.id}'
metadata: {tenant: "{{ payload.tenant }}"}
key: "{{ payload.id }}"`, nodes.Deps{})
	env, d := envWith(t, `{"id": "o-1", "tenant": "acme", "other": true}`)
	env.Meta["trace"] = "t-1"
	require.NoError(t, n.Process(t.Context(), env))
	outs := d.Outputs()
	require.Len(t, outs, 2)
	assert.Equal(t, "a", outs[0].Topic)
	assert.Equal(t, "b", outs[1].Topic)
	assert.JSONEq(t, `{"id":"o-1"}`, string(outs[0].Payload))
	assert.Equal(t, map[string]string{"trace": "t-1", "tenant": "acme", "partition_key": "o-1"}, outs[0].Meta)

	tpl := nodestest.New(t, "publish", `{topic: "events.{{ payload.kind }}"}`, nodes.Deps{})
	env, d = envWith(t, `{"kind": "paid"}`)
	require.NoError(t, tpl.Process(t.Context(), env))
	assert.Equal(t, "events.paid", d.Outputs()[0].Topic)
	env, _ = envWith(t, `{"kind": ""}`)
	err := nodestest.New(t, "publish", `{topic: "{{ payload.kind }}"}`, nodes.Deps{}).Process(t.Context(), env)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "rendered empty")
	// A missing field is an error naming it, not an empty part.
	env, _ = envWith(t, `{}`)
	err = nodestest.New(t, "publish", `{topic: "events.{{ payload.kind }}"}`, nodes.Deps{}).Process(t.Context(), env)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "{{ payload.kind }} is missing")
	env, d = envWith(t, `{}`)
	require.NoError(t, nodestest.New(t, "publish", `{topic: "events.{{ payload.kind ?? 'other' }}"}`, nodes.Deps{}).Process(t.Context(), env))
	assert.Equal(t, "events.other", d.Outputs()[0].Topic)
}
