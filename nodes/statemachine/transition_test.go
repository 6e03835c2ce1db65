package statemachine_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
	_ "github.com/sluicehq/sluice/nodes/statemachine"
)

const orderMachine = `
machine: order
key: payload.id
event: payload.type
terminal: [delivered, cancelled]
transitions:
  - {event: create, from: [new], to: created}
  - {event: pay, from: [created], to: paid, guard: payload.amount > 0}
  - {event: ship, from: [paid], to: shipped}
  - {event: deliver, from: [shipped], to: delivered}
  - {event: cancel, from: [created, paid], to: cancelled}
`

func start(t *testing.T, with string, home string) nodes.Node {
	t.Helper()
	return startWith(t, with, nodes.Deps{StateDir: home})
}

// startWith builds and starts the node with deps; it is closed at cleanup.
func startWith(t *testing.T, with string, deps nodes.Deps) nodes.Node {
	t.Helper()
	n := nodestest.New(t, "state.transition", with, deps)
	require.NoError(t, n.(nodes.Starter).Start(t.Context()))
	t.Cleanup(func() { n.(nodes.Closer).Close() })
	return n
}

// send runs one event message through the node; it returns the step result.
func send(t *testing.T, n nodes.Node, msgID string, payload map[string]any) (map[string]any, error) {
	env := nodestest.Envelope(nil, 0, "order")
	env.Event.ID = msgID
	env.Payload = payload
	err := n.Process(t.Context(), env)
	res, _ := env.Steps["order"].(map[string]any)
	return res, err
}

func TestOrderLifecycle(t *testing.T) {
	n := start(t, orderMachine, t.TempDir())
	res, err := send(t, n, "m1", map[string]any{"id": "o-1", "type": "create"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"machine": "order", "key": "o-1", "event": "create", "from": "new", "to": "created", "version": int64(1), "applied": true}, res)

	_, err = send(t, n, "m2", map[string]any{"id": "o-1", "type": "ship"})
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.EqualError(t, err, `order o-1 is created: event "ship" is not allowed there (allowed: cancel, pay)`)

	_, err = send(t, n, "m3", map[string]any{"id": "o-1", "type": "pay", "amount": 0})
	assert.ErrorContains(t, err, `order o-1 in state created: event "pay" rejected by its guard`)

	for i, ev := range []string{"pay", "ship", "deliver"} {
		res, err = send(t, n, "m4"+ev, map[string]any{"id": "o-1", "type": ev, "amount": 10})
		require.NoError(t, err)
		assert.Equal(t, int64(i+2), res["version"])
	}
	assert.Equal(t, "delivered", res["to"])
	_, err = send(t, n, "m9", map[string]any{"id": "o-1", "type": "cancel"})
	assert.EqualError(t, err, `order o-1 is delivered, a terminal state: event "cancel" not applied`)

	// A redelivered message applies once; its result says so.
	res, err = send(t, n, "m4pay", map[string]any{"id": "o-1", "type": "pay", "amount": 10})
	require.NoError(t, err)
	assert.Equal(t, false, res["applied"])
	assert.Equal(t, []any{int64(2), "created", "paid"}, []any{res["version"], res["from"], res["to"]}, "the transition it caused")

	_, err = send(t, n, "m10", map[string]any{"type": "create"})
	assert.ErrorContains(t, err, `key "payload.id" is empty or missing`)
}

func TestStateSurvivesARestart(t *testing.T) {
	home := t.TempDir()
	n := start(t, orderMachine, home)
	_, err := send(t, n, "a", map[string]any{"id": 42, "type": "create"})
	require.NoError(t, err)
	require.NoError(t, n.(nodes.Closer).Close())

	n2 := start(t, orderMachine, home)
	res, err := send(t, n2, "b", map[string]any{"id": 42, "type": "cancel"})
	require.NoError(t, err)
	assert.Equal(t, "created", res["from"], "numbers are keys too: 42 is \"42\"")
}

func TestMachineConfigErrors(t *testing.T) {
	_, err := nodestest.Build("state.transition", `
machine: order
key: payload.id
event: payload.type
initial: done
terminal: [done]
transitions:
  - {event: reopen, from: [done], to: open}
`, nodes.Deps{})
	require.Error(t, err)
	assert.Len(t, nodestest.Problems(t, err), 2, "%v", err)
}

// Keys and events that are not strings or numbers are refused: formatted,
// {"x":1} and {"x":1, "y":2} would name entities like "map[x:1]" that
// collide.
func TestKeyMustBeAStringOrNumber(t *testing.T) {
	n := start(t, orderMachine, t.TempDir())
	for i, key := range []any{map[string]any{"x": 1.0}, []any{"a"}, true} {
		_, err := send(t, n, "m"+string(rune('a'+i)), map[string]any{"id": key, "type": "create"})
		require.Error(t, err)
		assert.True(t, nodes.IsPermanent(err))
		assert.ErrorContains(t, err, `key "payload.id" is a`)
		assert.ErrorContains(t, err, "not a string or a number")
	}
	_, err := send(t, n, "m-event", map[string]any{"id": "o-9", "type": map[string]any{"x": 1.0}})
	assert.ErrorContains(t, err, `event "payload.type" is an object, not a string or a number`)

	res, err := send(t, n, "m-num", map[string]any{"id": 42.0, "type": "create"})
	require.NoError(t, err)
	assert.Equal(t, "42", res["key"])
}
