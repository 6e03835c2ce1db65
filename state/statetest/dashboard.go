package statetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
)

// dashboardQueries: what the dashboard asks of the state database: runs
// by error text and end time, dead letters grouped by cause, and dead
// letters by the message they came from or were replayed as.
func dashboardQueries(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, r := range []state.Run{
		{ID: "r1", Flow: "a", Input: "m1", Status: state.StatusSucceeded, Started: t0},
		{ID: "r2", Flow: "a", Input: "m2", Status: state.StatusDeadLettered, Started: t0.Add(time.Minute), Step: "s", Error: "customers/acme.json: object not found"},
		{ID: "r3", Flow: "a", Input: "m3", Status: state.StatusDeadLettered, Started: t0.Add(2 * time.Minute), Step: "s", Error: "timeout"},
	} {
		db.Record(r)
	}
	require.NoError(t, db.Flush(ctx))
	for _, tc := range []struct {
		f    state.Filter
		want []string
	}{
		{state.Filter{Error: "acme"}, []string{"r2"}},
		{state.Filter{Error: "%"}, nil}, // the text is literal, not a pattern
		{state.Filter{Until: t0.Add(2 * time.Minute)}, []string{"r2", "r1"}},
		{state.Filter{Since: t0.Add(time.Minute), Until: t0.Add(2 * time.Minute)}, []string{"r2"}},
	} {
		assert.Equal(t, tc.want, runIDs(t, db, tc.f), "%+v", tc.f)
	}

	for i, dl := range []state.DeadLetter{
		{ID: "d1", Flow: "a", Step: "s", Error: "not found", Failed: t0, SourceTopic: "in", SourceID: "m1", Topic: "a.dlq"},
		{ID: "d2", Flow: "a", Step: "s", Error: "not found", Failed: t0.Add(time.Minute), SourceTopic: "in", SourceID: "m2", Topic: "a.dlq"},
		{ID: "d3", Flow: "a", Step: "s", Error: "timeout", Failed: t0.Add(2 * time.Minute), SourceTopic: "in", SourceID: "m3", Topic: "a.dlq"},
		{ID: "d4", Flow: "b", Step: "s", Error: "not found", Failed: t0.Add(3 * time.Minute), SourceTopic: "in", SourceID: "m4", Topic: "b.dlq"},
	} {
		require.NoError(t, db.RecordDeadLetter(ctx, dl), i)
	}
	groups, err := db.DeadLetterGroups(ctx, state.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, groups, 3)
	assert.Equal(t, state.DeadLetterGroup{Flow: "a", Step: "s", Error: "not found", Count: 2, First: t0, Last: t0.Add(time.Minute)}, groups[0], "largest first")
	assert.Equal(t, "timeout", groups[1].Error, "then by flow, step and error")
	assert.Equal(t, "b", groups[2].Flow)

	require.NoError(t, db.MarkReplayed(ctx, "d2", "replay-of-d2"))
	groups, err = db.DeadLetterGroups(ctx, state.DeadLetterFilter{Flow: "a"})
	require.NoError(t, err)
	require.Len(t, groups, 2, "replayed ones leave their group")
	assert.EqualValues(t, 1, groups[0].Count)

	got, err := db.DeadLetters(ctx, state.DeadLetterFilter{SourceID: "m3"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "d3", got[0].ID)
	got, err = db.DeadLetters(ctx, state.DeadLetterFilter{ReplayID: "replay-of-d2", Replayed: true})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "d2", got[0].ID)
}
