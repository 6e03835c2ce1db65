package flows_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/state"
)

// TestUntracedRunsPassTraceContextOn: with no tracer provider nothing is
// traced (no trace id recorded), yet a received traceparent and
// tracestate go on unchanged to the messages the run publishes, so a
// traced process downstream continues the caller's trace; and the
// published message names its run, which the next run records as parent.
func TestUntracedRunsPassTraceContextOn(t *testing.T) {
	h := start(t, `
name: relay
on: {topic: in}
steps:
  - node: publish
    with: {topic: mid}
---
name: sink
on: {topic: mid}
steps:
  - node: transform
    with:
      set: {seen: "true"}
`, nil)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := message.NewMessage("traced-1", []byte(`{"n": 1}`))
	m.Metadata.Set(flows.MetaTraceparent, tp)
	m.Metadata.Set(flows.MetaTracestate, "vendor=x")
	require.NoError(t, h.broker.Publisher().Publish("in", m))

	out := h.consume("mid", 1)[0]
	assert.Equal(t, tp, out.Metadata.Get(flows.MetaTraceparent))
	assert.Equal(t, "vendor=x", out.Metadata.Get(flows.MetaTracestate))

	relay := h.waitRuns(state.Filter{Flow: "relay"}, 1)[0]
	assert.Equal(t, relay.ID, out.Metadata.Get(flows.MetaRun))
	assert.Empty(t, relay.TraceID, "not traced: no trace id")
	sink := h.waitRuns(state.Filter{Flow: "sink"}, 1)[0]
	assert.Equal(t, relay.ID, sink.Parent)
	assert.Empty(t, relay.Parent)
}
