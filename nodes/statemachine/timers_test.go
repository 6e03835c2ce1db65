package statemachine_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

const expiringOrders = orderMachine + `  - {event: expire, from: [created], to: cancelled}
timeouts:
  - {state: created, after: 300ms, event: expire}
timer_poll: 20ms
`

type published struct {
	topic string
	msg   *message.Message
}

func startTimers(t *testing.T, deps nodes.Deps) (nodes.Node, chan published) {
	t.Helper()
	out := make(chan published, 100)
	deps.Publish = func(_ context.Context, topic string, msgs ...*message.Message) error {
		for _, m := range msgs {
			out <- published{topic, m}
		}
		return nil
	}
	n := nodestest.New(t, "state.transition", expiringOrders, deps)
	require.NoError(t, n.(nodes.Starter).Start(t.Context()))
	t.Cleanup(func() { n.(nodes.Closer).Close() })
	return n, out
}

// deliver runs a message as the engine would: its id, topic and metadata
// on the envelope.
func deliver(t *testing.T, n nodes.Node, topic string, m *message.Message, payload map[string]any) (map[string]any, error) {
	res, _, err := deliverRoute(t, n, topic, m, payload)
	return res, err
}

// deliverRoute is deliver, also reporting the route the step set (if any).
func deliverRoute(t *testing.T, n nodes.Node, topic string, m *message.Message, payload map[string]any) (map[string]any, *nodes.Route, error) {
	d := nodes.NewDelivery(nil, 0)
	d.SetStep("order")
	env := d.Envelope()
	env.Event = nodes.Event{ID: m.UUID, Topic: topic}
	env.Meta = maps.Clone(map[string]string(m.Metadata))
	env.Payload = payload
	err := n.Process(t.Context(), env)
	res, _ := env.Steps["order"].(map[string]any)
	if r, ok := d.TakeRoute(); ok {
		return res, &r, err
	}
	return res, nil, err
}

func testTimers(t *testing.T, deps nodes.Deps) {
	n, out := startTimers(t, deps)
	create := func(id, key string) {
		_, err := deliver(t, n, "orders", message.NewMessage(id, nil), map[string]any{"id": key, "type": "create"})
		require.NoError(t, err)
	}
	create("m1", "o-1")
	create("m2", "o-2")
	_, err := deliver(t, n, "orders", message.NewMessage("m3", nil), map[string]any{"id": "o-2", "type": "pay", "amount": 5})
	require.NoError(t, err, "o-2 is paid before its timer is due: the timer must not fire")

	var p published
	select {
	case p = <-out:
	case <-time.After(10 * time.Second):
		t.Fatal("the timer of o-1 never fired")
	}
	assert.Equal(t, "orders", p.topic, "to the topic of the message that set it")
	assert.Equal(t, "timer:order:o-1:1:expire", p.msg.UUID)
	assert.JSONEq(t, `{"machine":"order","key":"o-1","event":"expire","state":"created","version":1,"timer":true,"id":"o-1","type":"expire"}`, string(p.msg.Payload))

	// The timer's message runs through the flow like any other.
	res, err := deliver(t, n, p.topic, p.msg, map[string]any{"key": "o-1"})
	require.NoError(t, err)
	assert.Equal(t, "cancelled", res["to"])
	assert.Equal(t, true, res["applied"])
	res, err = deliver(t, n, p.topic, p.msg, map[string]any{"key": "o-1"})
	require.NoError(t, err, "a redelivered timer message")
	assert.Equal(t, false, res["applied"])

	select {
	case p = <-out:
		t.Fatalf("a second timer fired: %s", p.msg.UUID)
	case <-time.After(500 * time.Millisecond): // several poll intervals past o-2's due time
	}
}

func TestTimersSQLite(t *testing.T) {
	testTimers(t, nodes.Deps{StateDir: t.TempDir()})
}

func TestTimersPostgres(t *testing.T) {
	testTimers(t, nodes.Deps{StateDir: t.TempDir(), State: pgtest.URL(t)})
}

// TestStaleTimerMessage: a timer's message processed after its entity
// moved on (it was claimed just before a pay) changes nothing, and ends
// the run: later steps never route on a state the timer did not cause.
func TestStaleTimerMessage(t *testing.T) {
	home := t.TempDir()
	n, _ := startTimers(t, nodes.Deps{StateDir: home})
	_, err := deliver(t, n, "orders", message.NewMessage("m1", nil), map[string]any{"id": "o-1", "type": "create"})
	require.NoError(t, err)
	_, err = deliver(t, n, "orders", message.NewMessage("m2", nil), map[string]any{"id": "o-1", "type": "pay", "amount": 5})
	require.NoError(t, err)
	m := message.NewMessage(machines.Timer{Machine: "order", Key: "o-1", Version: 1, Event: "expire"}.ID(), nil)
	m.Metadata = message.Metadata{"sluice_timer_machine": "order", "sluice_timer_key": "o-1", "sluice_timer_version": "1", "sluice_timer_event": "expire"}
	res, route, err := deliverRoute(t, n, "orders", m, map[string]any{})
	require.NoError(t, err)
	assert.Equal(t, false, res["applied"])
	assert.Equal(t, true, res["stale"])
	assert.Equal(t, "paid", res["to"])
	assert.Equal(t, &nodes.Route{End: true}, route)

	// A message that applies goes on with the flow.
	_, route, err = deliverRoute(t, n, "orders", message.NewMessage("m3", nil), map[string]any{"id": "o-1", "type": "ship"})
	require.NoError(t, err)
	assert.Nil(t, route)
}

func TestTimeoutConfigErrors(t *testing.T) {
	_, err := nodestest.Build("state.transition", orderMachine+`timeouts:
  - {state: delivered, after: 1m, event: expire}
  - {state: created, after: 1m, event: ship}
`, nodes.Deps{})
	require.Error(t, err)
	assert.ErrorContains(t, err, `"delivered" is terminal`)
	assert.ErrorContains(t, err, `no transition takes event "ship" from state "created"`)
}
