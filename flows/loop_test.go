package flows_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/state"
)

// A flow whose templated topic feeds itself stops at the hop limit: the
// message is dead-lettered with the reason instead of looping forever.
func TestSelfFeedingFlowIsStoppedByTheHopLimit(t *testing.T) {
	h := start(t, `
name: echo
on: {topic: events.in}
steps:
  - node: publish
    with: {topic: 'events.{{ payload.kind }}'}
`, nil)
	h.publish("events.in", `{"kind": "in"}`)
	dl := h.consume("echo.dlq", 1)
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "passed through 32 flows")
	assert.Equal(t, "32", dl[0].Metadata.Get(flows.MetaHops))
	runs := h.waitRuns(state.Filter{Flow: "echo", Status: state.StatusSucceeded}, 32)
	assert.Len(t, runs, 32, "the first message and 31 repeats ran; the 33rd was stopped")
}

// A loop through two flows is stopped the same way.
func TestLoopThroughTwoFlowsIsStopped(t *testing.T) {
	dir := t.TempDir()
	h := startIn(t, dir, `
name: ping
on: {topic: ping}
steps:
  - node: publish
    with: {topic: pong}
---
name: pong
on: {topic: pong}
steps:
  - node: publish
    with: {topic: ping}
`, nil)
	h.publish("ping", `{}`)
	var dl string
	require.Eventually(t, func() bool {
		require.NoError(t, h.state.Flush(t.Context()))
		for _, f := range []string{"ping", "pong"} {
			runs, err := h.state.Runs(t.Context(), state.Filter{Flow: f, Status: state.StatusDeadLettered})
			require.NoError(t, err)
			if len(runs) > 0 {
				dl = runs[0].Error
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	assert.Contains(t, dl, "a loop between flows?")
}

// Steps written as YAML aliases run; auto step ids are linear in the
// number of steps.
func TestAliasStepRunsAndManyStepsLoadFast(t *testing.T) {
	h := start(t, `
name: alias
on: {topic: in}
steps:
  - &shape {node: transform, with: {set: {n: '(payload.n ?? 0) + 1'}}}
  - *shape
  - node: publish
    with: {topic: out}
`, nil)
	h.publish("in", `{"n": 0}`)
	assert.Equal(t, 2.0, payloadOf(t, h.consume("out", 1)[0])["n"], "both the anchor and its alias ran")

	file := filepath.Join(t.TempDir(), "big.yaml")
	text := "name: big\non: {topic: in}\nsteps:\n"
	for range 20000 {
		text += "  - node: log\n    with: {message: hi}\n"
	}
	require.NoError(t, os.WriteFile(file, []byte(text), 0o644))
	fl, err := flows.Loader{}.Load(file)
	require.NoError(t, err)
	require.Len(t, fl[0].Steps, 20000)
	assert.Equal(t, "log_"+strconv.Itoa(20000), fl[0].Steps[19999].ID)
}
