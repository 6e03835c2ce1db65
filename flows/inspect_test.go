package flows_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/state"
)

// TestEngineFlowsDescribesAndCounts: Flows describes each flow (trigger,
// steps, branches, where steps write) and counts its runs and steps live;
// Lag asks the broker; ReplayDeadLetters publishes through the engine.
func TestEngineFlowsDescribesAndCounts(t *testing.T) {
	h := start(t, `name: route
description: routes by size
on: {topic: in}
retry: {max_attempts: 1}
steps:
  - id: check
    node: transform
    with: {set: {n: 'payload.n / payload.d'}}
  - id: pick
    node: switch
    with:
      cases:
        - {when: payload.n > 10, branch: big}
        - {when: "true", topic: small}
branches:
  big:
    - id: out
      node: publish
      with: {topics: [large]}
`, nil)
	views := h.engine.Flows()
	require.Len(t, views, 1)
	v := views[0]
	assert.Equal(t, "route", v.Name)
	assert.Equal(t, "routes by size", v.Description)
	assert.Equal(t, flows.TriggerTopic, v.Trigger)
	assert.Equal(t, "in", v.Source)
	assert.Equal(t, "in", v.InputTopic)
	assert.Equal(t, "route.dlq", v.DeadLetter)
	require.Len(t, v.Steps, 2)
	assert.Equal(t, "check", v.Steps[0].ID)
	assert.Equal(t, []string{"big"}, v.Steps[1].Branches)
	assert.Equal(t, []string{"small"}, v.Steps[1].Topics)
	require.Len(t, v.Branches, 1)
	assert.Equal(t, "big", v.Branches[0].Name)
	assert.Equal(t, []string{"large"}, v.Branches[0].Steps[0].Topics)
	assert.Equal(t, flows.FlowStats{Lag: -1}, v.Stats, "nothing ran yet")

	h.publish("in", `{"n": 50, "d": 1}`)
	h.publish("in", `{"n": 1, "d": 1}`)
	h.publish("in", `{"n": 1, "d": "zero"}`) // fails: a string in arithmetic
	h.waitRuns(state.Filter{Flow: "route"}, 3)
	v, ok := h.engine.Flow("route")
	require.True(t, ok)
	assert.EqualValues(t, 3, v.Stats.Received)
	assert.EqualValues(t, 2, v.Stats.Succeeded)
	assert.EqualValues(t, 1, v.Stats.DeadLettered)
	assert.EqualValues(t, 3, v.Stats.Runs())
	assert.EqualValues(t, 1, v.Stats.Errors())
	assert.Positive(t, v.Stats.P99)
	assert.LessOrEqual(t, v.Stats.P50, v.Stats.P99)
	check := v.Steps[0].Stats
	assert.EqualValues(t, 2, check.Succeeded)
	assert.EqualValues(t, 1, check.Failed)
	assert.EqualValues(t, 3, check.Count())
	assert.Positive(t, check.P50)
	assert.EqualValues(t, 1, v.Branches[0].Steps[0].Stats.Succeeded, "one message took the branch")
	_, ok = h.engine.Flow("nope")
	assert.False(t, ok)

	require.Eventually(t, func() bool {
		views = h.engine.Flows()
		h.engine.Lag(t.Context(), views)
		return views[0].Stats.Lag == 0
	}, 10*time.Second, 10*time.Millisecond, "the SQLite queue knows the group's lag once it committed")

	require.Eventually(t, func() bool {
		dls, err := h.state.DeadLetters(t.Context(), state.DeadLetterFilter{Flow: "route"})
		return err == nil && len(dls) == 1
	}, 10*time.Second, 10*time.Millisecond)
	var progress []int
	n, err := h.engine.ReplayDeadLetters(t.Context(), state.DeadLetterFilter{Flow: "route"}, func(done, _ int) { progress = append(progress, done) })
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, []int{1}, progress)
	h.waitRuns(state.Filter{Flow: "route", Status: state.StatusDeadLettered}, 2) // the cause is still there
}
