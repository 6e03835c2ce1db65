package state_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// Metered calls recorded with runs sum per flow, day, kind and name.
func TestCallUsageSumsMeteredCalls(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	defer db.Close()
	day := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	step := func(calls ...nodes.Call) []state.StepRun {
		return []state.StepRun{{ID: "s", Node: "function", Status: "succeeded", Calls: calls}}
	}
	fn := func(d time.Duration, cold bool, e string) nodes.Call {
		return nodes.Call{Kind: "function", Name: "count", Duration: d, ColdStart: cold, BytesIn: 10, Error: e}
	}
	db.Record(state.Run{ID: "a", Flow: "f", Input: "1", Status: state.StatusSucceeded, Started: day, Steps: step(fn(time.Second, true, ""))})
	db.Record(state.Run{ID: "b", Flow: "f", Input: "2", Status: state.StatusDeadLettered, Started: day,
		Steps: step(fn(500*time.Millisecond, false, "boom"), fn(250*time.Millisecond, false, ""))})
	db.Record(state.Run{ID: "c", Flow: "f", Input: "3", Status: state.StatusSucceeded, Started: day,
		Steps: step(nodes.Call{Kind: "model", Name: "det.onnx", Duration: 20 * time.Millisecond, BytesIn: 1000})})
	db.Record(state.Run{ID: "d", Flow: "f", Input: "1", Status: state.StatusDuplicate, Started: day, Steps: step(fn(time.Second, false, ""))})
	require.NoError(t, db.Flush(t.Context()))

	got, err := db.CallUsage(t.Context(), state.UsageFilter{})
	require.NoError(t, err)
	assert.Equal(t, []state.CallUsage{
		{Flow: "f", Day: "2026-11-25", Kind: "function", Name: "count", Calls: 3, Errors: 1, ColdStarts: 1, Seconds: 1.75, BytesIn: 30},
		{Flow: "f", Day: "2026-11-25", Kind: "model", Name: "det.onnx", Calls: 1, Seconds: 0.02, BytesIn: 1000},
	}, got, "duplicates are not billed")
}
