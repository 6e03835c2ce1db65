package state_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
)

func TestLedgerRoundTripAndFilters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := state.Open(path)
	require.NoError(t, err)
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i, r := range []state.Run{
		{ID: "r1", Flow: "a", Trigger: "topic:x", Input: "m1", Attempts: 1, Status: state.StatusSucceeded, Started: t0, Duration: 1500 * time.Microsecond,
			Steps: []state.StepRun{{ID: "s", Node: "log", Status: "succeeded", Attempts: 1, Duration: time.Millisecond}}},
		{ID: "r2", Flow: "a", Trigger: "topic:x", Input: "m2", Attempts: 3, Status: state.StatusDeadLettered, Started: t0.Add(time.Minute), Step: "s", Error: "boom"},
		{ID: "r3", Flow: "b", Trigger: "bucket:u", Input: "u/k@e", Attempts: 1, Status: state.StatusSucceeded, Started: t0.Add(2 * time.Minute)},
	} {
		_ = i
		db.Record(r)
	}
	require.NoError(t, db.Close(), "close writes what is queued")

	db, err = state.Open(path)
	require.NoError(t, err)
	defer db.Close()
	ctx := t.Context()
	all, err := db.Runs(ctx, state.Filter{})
	require.NoError(t, err)
	require.Len(t, all, 3)
	assert.Equal(t, []string{"r3", "r2", "r1"}, []string{all[0].ID, all[1].ID, all[2].ID}, "newest first")
	r1 := all[2]
	assert.Equal(t, 1500*time.Microsecond, r1.Duration)
	assert.Equal(t, t0, r1.Started)
	assert.Equal(t, []state.StepRun{{ID: "s", Node: "log", Status: "succeeded", Attempts: 1, Duration: time.Millisecond}}, r1.Steps)

	for _, tc := range []struct {
		f    state.Filter
		want []string
	}{
		{state.Filter{Flow: "a"}, []string{"r2", "r1"}},
		{state.Filter{Status: state.StatusDeadLettered}, []string{"r2"}},
		{state.Filter{Input: "u/k@e"}, []string{"r3"}},
		{state.Filter{Since: t0.Add(90 * time.Second)}, []string{"r3"}},
		{state.Filter{Limit: 1}, []string{"r3"}},
	} {
		runs, err := db.Runs(ctx, tc.f)
		require.NoError(t, err)
		var ids []string
		for _, r := range runs {
			ids = append(ids, r.ID)
		}
		assert.Equal(t, tc.want, ids, "%+v", tc.f)
	}
}

func TestSeenObjects(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	defer db.Close()
	ctx := t.Context()
	seen, err := db.Seen(ctx, "b", "k", "e1")
	require.NoError(t, err)
	assert.False(t, seen)
	isNew, err := db.MarkSeen(ctx, "b", "k", "e1")
	require.NoError(t, err)
	assert.True(t, isNew)
	isNew, err = db.MarkSeen(ctx, "b", "k", "e1")
	require.NoError(t, err)
	assert.False(t, isNew)
	seen, _ = db.Seen(ctx, "b", "k", "e1")
	assert.True(t, seen)
	seen, _ = db.Seen(ctx, "b", "k", "e2")
	assert.False(t, seen, "a new version of the object is new")
}

func TestCompletionLedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := state.Open(path)
	require.NoError(t, err)
	ctx := t.Context()
	t0 := time.Now().UTC().Add(-48 * time.Hour)
	_, done, err := db.Completed(ctx, "f", "m1")
	require.NoError(t, err)
	assert.False(t, done)

	// Concurrent completions share commits; each returns once durable.
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			dup, err := db.Complete(ctx, state.Run{ID: fmt.Sprintf("r%d", i), Flow: "f", Input: fmt.Sprintf("m%d", i), Status: state.StatusSucceeded, Started: t0})
			if dup {
				err = fmt.Errorf("m%d: a first completion is no duplicate", i)
			}
			errs <- err
		}()
	}
	for range 20 {
		require.NoError(t, <-errs)
	}
	// A second completion of an input (a redelivery racing the first run)
	// is recorded as a duplicate.
	dup, err := db.Complete(ctx, state.Run{ID: "again", Flow: "f", Input: "m1", Status: state.StatusSucceeded, Started: time.Now()})
	require.NoError(t, err)
	assert.True(t, dup)
	require.NoError(t, db.Flush(ctx))
	again, err := db.Runs(ctx, state.Filter{ID: "again"}) // its own id: the first run's record stands
	require.NoError(t, err)
	require.Len(t, again, 1)
	assert.Equal(t, state.StatusDuplicate, again[0].Status)
	c, done, err := db.Completed(ctx, "f", "m1")
	require.NoError(t, err)
	assert.True(t, done)
	assert.Equal(t, "r1", c.Run, "the first completion stands")
	_, done, _ = db.Completed(ctx, "other-flow", "m1")
	assert.False(t, done, "completions are per flow")
	require.NoError(t, db.Close())

	db, err = state.Open(path)
	require.NoError(t, err)
	defer db.Close()
	_, done, _ = db.Completed(ctx, "f", "m7")
	assert.True(t, done, "durable across a reopen")
	n, err := db.Prune(ctx, time.Now().Add(-24*time.Hour))
	require.NoError(t, err)
	assert.EqualValues(t, 40, n, "20 old runs and their completions")
	_, done, _ = db.Completed(ctx, "f", "m1")
	assert.False(t, done)
}

// TestLostRunRecordsAreRecreated: a completion is committed before its run
// record (which is batched); after a crash in between, RecoverRuns (at the
// next start) recreates the record from the completion.
func TestLostRunRecordsAreRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := state.Open(path)
	require.NoError(t, err)
	ctx := t.Context()
	db.Record(state.Run{ID: "old", Flow: "f", Input: "m0", Status: state.StatusSucceeded, Started: time.Now().Add(-time.Minute)})
	require.NoError(t, db.Flush(ctx))

	// What a crash leaves: the completion, and no run record.
	raw, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	_, err = raw.Exec(`INSERT INTO completions (flow, input, run_id, status, done_ms) VALUES ('f', 'm1', 'lost', 'succeeded', ?)`, time.Now().UnixMilli())
	require.NoError(t, err)
	require.NoError(t, raw.Close())
	require.NoError(t, db.Close())

	db, err = state.Open(path)
	require.NoError(t, err)
	defer db.Close()
	n, err := db.RecoverRuns(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	runs, err := db.Runs(ctx, state.Filter{Input: "m1"})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, "lost", runs[0].ID)
	assert.Equal(t, state.StatusSucceeded, runs[0].Status)
	assert.Contains(t, runs[0].Error, "recreated from the completion ledger")
}
