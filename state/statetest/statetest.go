// Package statetest is the conformance suite of the state database: every
// backend (SQLite, PostgreSQL) passes it through a small harness.
package statetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/state"
)

// Harness names one empty database of a backend.
type Harness struct {
	// Open opens the database; called again after a Close, it reopens
	// the same one.
	Open func(t *testing.T) *state.DB
	// Exec runs raw SQL ($1… placeholders) on the database: how a test
	// makes what a crash or a newer release leaves.
	Exec func(t *testing.T, query string, args ...any)
	// OpenErr opens the database, returning the error.
	OpenErr func(t *testing.T) (*state.DB, error)
	// LedgerInRuns says the backend keeps each completion in its run
	// record (SQLite): no completion row of its own, written with the
	// record, so no crash can separate them.
	LedgerInRuns bool
}

// Run runs the suite; newHarness returns a harness on a new, empty
// database.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"LedgerRoundTripAndFilters", ledgerRoundTripAndFilters},
		{"SeenObjects", seenObjects},
		{"CompletionLedger", completionLedger},
		{"LostRunRecordsAreRecreated", lostRunRecordsAreRecreated},
		{"DeadLetters", deadLetters},
		{"Usage", usage},
		{"PruneInChunks", pruneInChunks},
		{"CompletionsSharedBetweenHandles", completionsSharedBetweenHandles},
		{"NewerSchemaRefused", newerSchemaRefused},
		{"AcceptedRunsAndResponses", acceptedRunsAndResponses},
		{"TraceAndLineage", traceAndLineage},
		{"DashboardQueries", dashboardQueries},
		{"WindowOfCompletions", windowOfCompletions},
		{"MixedRunRecords", mixedRunRecords},
		{"UnrecordedRuns", unrecordedRuns},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

func ledgerRoundTripAndFilters(t *testing.T, h Harness) {
	db := h.Open(t)
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

	db = h.Open(t)
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
		assert.Equal(t, tc.want, runIDs(t, db, tc.f), "%+v", tc.f)
	}
}

// runIDs lists the ids of the runs f matches, newest first.
func runIDs(t *testing.T, db *state.DB, f state.Filter) []string {
	t.Helper()
	runs, err := db.Runs(t.Context(), f)
	require.NoError(t, err)
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}

func seenObjects(t *testing.T, h Harness) {
	db := h.Open(t)
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

	// A removal forgets the key's versions (not other keys') and counts.
	_, err = db.MarkSeen(ctx, "b", "other", "e1")
	require.NoError(t, err)
	gen, err := db.Generation(ctx, "b", "k")
	require.NoError(t, err)
	assert.Zero(t, gen)
	for want := 1; want <= 2; want++ {
		require.NoError(t, db.Forget(ctx, "b", "k"))
		seen, _ = db.Seen(ctx, "b", "k", "e1")
		assert.False(t, seen, "the version uploaded again after a delete is new")
		gen, err = db.Generation(ctx, "b", "k")
		require.NoError(t, err)
		assert.Equal(t, want, gen)
		isNew, err = db.MarkSeen(ctx, "b", "k", "e1")
		require.NoError(t, err)
		assert.True(t, isNew)
	}
	seen, _ = db.Seen(ctx, "b", "other", "e1")
	assert.True(t, seen)
}

func completionLedger(t *testing.T, h Harness) {
	db := h.Open(t)
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

	db = h.Open(t)
	defer db.Close()
	_, done, _ = db.Completed(ctx, "f", "m7")
	assert.True(t, done, "durable across a reopen")
	n, err := db.Prune(ctx, time.Now().Add(-24*time.Hour))
	require.NoError(t, err)
	if h.LedgerInRuns {
		assert.EqualValues(t, 20, n, "20 old runs, which were their inputs' completions")
	} else {
		assert.EqualValues(t, 40, n, "20 old runs and their completions")
	}
	_, done, _ = db.Completed(ctx, "f", "m1")
	assert.False(t, done)
}

// lostRunRecordsAreRecreated: a completion is committed before its run
// record (which is batched); after a crash in between, RecoverRuns (at the
// next start) recreates the record from the completion.
//
// Where the record is the completion (LedgerInRuns), it is there as soon
// as Complete returns, with no Flush.
func lostRunRecordsAreRecreated(t *testing.T, h Harness) {
	db := h.Open(t)
	ctx := t.Context()
	if h.LedgerInRuns {
		_, err := db.Complete(ctx, state.Run{ID: "r1", Flow: "f", Input: "m1", Status: state.StatusSucceeded, Started: time.Now(),
			Steps: []state.StepRun{{ID: "s", Node: "transform", Status: state.StatusSucceeded, Attempts: 1}}})
		require.NoError(t, err)
		runs, err := db.Runs(ctx, state.Filter{Input: "m1"})
		require.NoError(t, err)
		require.Len(t, runs, 1, "the record is written with the completion")
		assert.Equal(t, "r1", runs[0].ID)
		require.Len(t, runs[0].Steps, 1, "with its steps")
		n, err := db.RecoverRuns(ctx)
		require.NoError(t, err)
		assert.Zero(t, n, "nothing to recreate")
		return
	}
	db.Record(state.Run{ID: "old", Flow: "f", Input: "m0", Status: state.StatusSucceeded, Started: time.Now().Add(-time.Minute)})
	require.NoError(t, db.Flush(ctx))

	// What a crash leaves: the completion, and no run record.
	h.Exec(t, `INSERT INTO completions (flow, input, run_id, status, done_ms) VALUES ('f', 'm1', 'lost', 'succeeded', $1)`, time.Now().UnixMilli())
	require.NoError(t, db.Close())

	db = h.Open(t)
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

func deadLetters(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i, dl := range []state.DeadLetter{
		{ID: "d1", Flow: "orders", Step: "order", Node: "state.transition", Error: "order o-1 is new: event \"ship\" is not allowed", Attempts: 1,
			Failed: t0, SourceTopic: "orders", SourceID: "m1", Topic: "orders.dlq", Payload: []byte(`{"a":1}`), Metadata: map[string]string{"k": "v"}},
		{ID: "d2", Flow: "orders", Step: "order", Error: "guard said no", Attempts: 3, Failed: t0.Add(time.Minute), SourceTopic: "orders", SourceID: "m2", Topic: "orders.dlq"},
		{ID: "d3", Flow: "thumbs", Error: "bad jpeg", Attempts: 1, Failed: t0.Add(2 * time.Minute), SourceTopic: "x", SourceID: "m3", Topic: "thumbs.dlq"},
	} {
		require.NoError(t, db.RecordDeadLetter(ctx, dl), i)
	}
	all, err := db.DeadLetters(ctx, state.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, all, 3)
	assert.Equal(t, "d1", all[0].ID, "oldest first")
	assert.Equal(t, []byte(`{"a":1}`), all[0].Payload)
	assert.Equal(t, map[string]string{"k": "v"}, all[0].Metadata)
	assert.Equal(t, t0, all[0].Failed)
	got, err := db.DeadLetters(ctx, state.DeadLetterFilter{Error: "not allowed"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "d1", got[0].ID)
	got, err = db.DeadLetters(ctx, state.DeadLetterFilter{IDs: []string{"d2", "d3"}, Flow: "orders"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "d2", got[0].ID)

	require.NoError(t, db.MarkReplayed(ctx, "d1", "replay-1"))
	got, err = db.DeadLetters(ctx, state.DeadLetterFilter{Flow: "orders"})
	require.NoError(t, err)
	assert.Len(t, got, 1, "replayed ones are left out by default")
	got, err = db.DeadLetters(ctx, state.DeadLetterFilter{Flow: "orders", Replayed: true})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.NotNil(t, got[0].Replayed)
	assert.Equal(t, "replay-1", got[0].ReplayID)

	n, err := db.PurgeDeadLetters(ctx, state.DeadLetterFilter{Flow: "orders", Replayed: true})
	require.NoError(t, err)
	assert.EqualValues(t, 2, n)
	got, err = db.DeadLetters(ctx, state.DeadLetterFilter{Replayed: true})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "d3", got[0].ID)
}

func usage(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	d1 := time.Date(2026, 11, 24, 23, 59, 0, 0, time.UTC)
	d2 := time.Date(2026, 11, 25, 0, 1, 0, 0, time.UTC)
	for _, r := range []state.Run{
		{ID: "a", Flow: "f", Input: "1", Status: state.StatusSucceeded, Started: d1, Duration: 2 * time.Second, BytesIn: 10, BytesOut: 5},
		{ID: "b", Flow: "f", Input: "2", Status: state.StatusDeadLettered, Started: d1, Duration: time.Second, BytesIn: 1},
		{ID: "c", Flow: "f", Input: "2", Status: state.StatusDuplicate, Started: d1, Duration: time.Hour},
		{ID: "d", Flow: "f", Input: "3", Status: state.StatusSucceeded, Started: d2, Duration: 500 * time.Millisecond, BytesOut: 7},
		{ID: "e", Flow: "g", Input: "1", Status: state.StatusFailed, Started: d2, Duration: time.Second},
	} {
		db.Record(r)
	}
	require.NoError(t, db.Flush(ctx))
	u, err := db.Usage(ctx, state.UsageFilter{})
	require.NoError(t, err)
	assert.Equal(t, []state.Usage{
		{Flow: "f", Day: "2026-11-24", Calls: 2, Errors: 1, Duplicates: 1, ComputeSeconds: 3, BytesIn: 11, BytesOut: 5},
		{Flow: "f", Day: "2026-11-25", Calls: 1, ComputeSeconds: 0.5, BytesOut: 7},
		{Flow: "g", Day: "2026-11-25", Calls: 1, Errors: 1, ComputeSeconds: 1},
	}, u)
	u, err = db.Usage(ctx, state.UsageFilter{Flow: "f", Since: d2})
	require.NoError(t, err)
	require.Len(t, u, 1)
	assert.Equal(t, "2026-11-25", u[0].Day)
}

// pruneInChunks: more old rows than one prune statement deletes all go,
// and the recent ones stay.
func pruneInChunks(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	old := time.Now().Add(-72 * time.Hour)
	const n = 2500
	rows := 2 * n // a run and a completion per input
	if h.LedgerInRuns {
		rows = n
	} else {
		h.Exec(t, `INSERT INTO completions (flow, input, run_id, status, done_ms)
		SELECT 'f', 'in-' || x, 'r-' || x, 'succeeded', $1 FROM (`+series(n)+`) s`, old.UnixMilli())
	}
	h.Exec(t, `INSERT INTO runs (id, flow, trigger, input, attempts, status, started_ms, duration_us)
		SELECT 'r-' || x, 'f', 't', 'in-' || x, 1, 'succeeded', $1, 0 FROM (`+series(n)+`) s`, old.UnixMilli())
	_, err := db.Complete(ctx, state.Run{ID: "new", Flow: "f", Input: "fresh", Status: state.StatusSucceeded, Started: time.Now()})
	require.NoError(t, err)
	require.NoError(t, db.Flush(ctx))
	deleted, err := db.Prune(ctx, time.Now().Add(-24*time.Hour))
	require.NoError(t, err)
	assert.EqualValues(t, rows, deleted)
	_, done, err := db.Completed(ctx, "f", "fresh")
	require.NoError(t, err)
	assert.True(t, done)
	_, done, err = db.Completed(ctx, "f", "in-7")
	require.NoError(t, err)
	assert.False(t, done)
	runs, err := db.Runs(ctx, state.Filter{Flow: "f"})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	assert.Equal(t, "new", runs[0].ID)
}

// series is a SELECT of x = 1..n in SQL both backends run (a recursive
// common table expression).
func series(n int) string {
	return fmt.Sprintf(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) SELECT CAST(x AS TEXT) AS x FROM c`, n)
}

// completionsSharedBetweenHandles: two handles on one database (two
// processes) completing the same inputs at once: each input has exactly
// one first completion, the other is a duplicate.
func completionsSharedBetweenHandles(t *testing.T, h Harness) {
	a, b := h.Open(t), h.Open(t)
	defer a.Close()
	defer b.Close()
	ctx := t.Context()
	const n = 50
	firsts := make([][]string, 2)
	var wg sync.WaitGroup
	for i, db := range []*state.DB{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inner sync.WaitGroup
			var mu sync.Mutex
			for k := range n {
				inner.Add(1)
				go func() {
					defer inner.Done()
					dup, err := db.Complete(ctx, state.Run{ID: fmt.Sprintf("p%d-%d", i, k), Flow: "f", Input: fmt.Sprint("in-", k), Status: state.StatusSucceeded, Started: time.Now()})
					if !assert.NoError(t, err) {
						return
					}
					if !dup {
						mu.Lock()
						firsts[i] = append(firsts[i], fmt.Sprint("in-", k))
						mu.Unlock()
					}
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	assert.Len(t, append(firsts[0], firsts[1]...), n, "one first completion per input")
	for k := range n {
		c, done, err := b.Completed(ctx, "f", fmt.Sprint("in-", k))
		require.NoError(t, err)
		require.True(t, done)
		assert.True(t, strings.HasPrefix(c.Run, "p"), c.Run)
	}
}

// newerSchemaRefused: a database a newer release migrated is refused with
// a message saying so.
func newerSchemaRefused(t *testing.T, h Harness) {
	db := h.Open(t)
	require.NoError(t, db.Close())
	h.Exec(t, `UPDATE schema_version SET version = version + 1 WHERE component = 'state'`)
	_, err := h.OpenErr(t)
	require.ErrorIs(t, err, schema.ErrNewer)
	assert.ErrorContains(t, err, "upgrade sluice")
}

// acceptedRunsAndResponses: an async HTTP run is recorded as accepted,
// then finished with its answer; an accepted record arriving after the
// finished one (another process was faster) changes nothing, in one
// batch or across batches.
func acceptedRunsAndResponses(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	now := time.Now()
	db.Record(state.Run{ID: "a", Flow: "api", Input: "a", Status: state.StatusAccepted, Started: now})
	require.NoError(t, db.Flush(ctx))
	_, _, _, ok, err := db.RunResponse(ctx, "a")
	require.NoError(t, err)
	assert.False(t, ok, "no answer yet")
	db.Record(state.Run{ID: "a", Flow: "api", Input: "a", Status: state.StatusSucceeded, Started: now, HTTPStatus: 201,
		Response: []byte(`{"ok":true}`), ResponseType: "application/json"})
	db.Record(state.Run{ID: "b", Flow: "api", Input: "b", Status: state.StatusSucceeded, Started: now, HTTPStatus: 200, Response: []byte("b")})
	db.Record(state.Run{ID: "b", Flow: "api", Input: "b", Status: state.StatusAccepted, Started: now})
	require.NoError(t, db.Flush(ctx))
	db.Record(state.Run{ID: "a", Flow: "api", Input: "a", Status: state.StatusAccepted, Started: now})
	require.NoError(t, db.Flush(ctx))
	for id, want := range map[string]int{"a": 201, "b": 200} {
		code, _, body, ok, err := db.RunResponse(ctx, id)
		require.NoError(t, err)
		require.True(t, ok, id)
		assert.Equal(t, want, code, id)
		assert.NotEmpty(t, body, id)
		runs, err := db.Runs(ctx, state.Filter{ID: id})
		require.NoError(t, err)
		require.Len(t, runs, 1)
		assert.Equal(t, state.StatusSucceeded, runs[0].Status, id)
	}
	_, ctype, body, _, _ := db.RunResponse(ctx, "a")
	assert.Equal(t, "application/json", ctype)
	assert.Equal(t, `{"ok":true}`, string(body))
}

// traceAndLineage: a run's trace id and parent run round-trip, in batches
// big enough for multi-row inserts, and select runs by parent and trace.
func traceAndLineage(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	db.Record(state.Run{ID: "root", Flow: "ingest", Input: "up/a.jpg@e1", Status: state.StatusSucceeded, Started: t0, TraceID: trace})
	for i := range 100 {
		db.Record(state.Run{ID: fmt.Sprintf("child%03d", i), Flow: "thumb", Input: fmt.Sprint(i), Status: state.StatusSucceeded,
			Started: t0.Add(time.Duration(i+1) * time.Second), TraceID: trace, Parent: "root"})
	}
	db.Record(state.Run{ID: "other", Flow: "thumb", Input: "x", Status: state.StatusSucceeded, Started: t0})
	require.NoError(t, db.Flush(ctx))

	got, err := db.Runs(ctx, state.Filter{ID: "child042"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, trace, got[0].TraceID)
	assert.Equal(t, "root", got[0].Parent)

	children, err := db.Runs(ctx, state.Filter{Parent: "root", Limit: 1000})
	require.NoError(t, err)
	assert.Len(t, children, 100)
	traced, err := db.Runs(ctx, state.Filter{TraceID: trace, Limit: 1000})
	require.NoError(t, err)
	assert.Len(t, traced, 101)
	other, err := db.Runs(ctx, state.Filter{ID: "other"})
	require.NoError(t, err)
	require.Len(t, other, 1)
	assert.Empty(t, other[0].TraceID+other[0].Parent, "untraced runs have neither")

	// Lineage: from a child, the chain up to the root and the child's
	// own subtree; from the root, every child.
	db.Record(state.Run{ID: "grandchild", Flow: "index", Input: "g", Status: state.StatusSucceeded, Started: t0.Add(time.Hour), Parent: "child042"})
	// A loop of parents (not made by the engine) ends.
	db.Record(state.Run{ID: "loop-a", Flow: "x", Input: "a", Status: state.StatusSucceeded, Started: t0, Parent: "loop-b"})
	db.Record(state.Run{ID: "loop-b", Flow: "x", Input: "b", Status: state.StatusSucceeded, Started: t0, Parent: "loop-a"})
	require.NoError(t, db.Flush(ctx))
	tree, err := db.Lineage(ctx, "child042")
	require.NoError(t, err)
	assert.Equal(t, "root", tree.ID)
	assert.False(t, tree.Selected)
	require.Len(t, tree.Children, 1, "only the chain down to the run")
	c := tree.Children[0]
	assert.Equal(t, "child042", c.ID)
	assert.True(t, c.Selected)
	require.Len(t, c.Children, 1)
	assert.Equal(t, "grandchild", c.Children[0].ID)

	tree, err = db.Lineage(ctx, "root")
	require.NoError(t, err)
	assert.True(t, tree.Selected)
	require.Len(t, tree.Children, 100)
	assert.Equal(t, "child000", tree.Children[0].ID, "oldest first")

	tree, err = db.Lineage(ctx, "loop-a")
	require.NoError(t, err)
	assert.Equal(t, "loop-a", tree.ID, "a loop of parents is followed once")
	require.Len(t, tree.Children, 1)
	assert.Equal(t, "loop-b", tree.Children[0].ID)
	assert.Empty(t, tree.Children[0].Children)

	_, err = db.Lineage(ctx, "missing")
	assert.ErrorIs(t, err, state.ErrNoRun)
}

// windowOfCompletions commits a stream's window at once (CompleteAll):
// 150 inputs, of which two were completed before and one comes twice;
// exactly those are duplicates, every lookup finds its run, and a
// redelivery of the window finds every input completed.
func windowOfCompletions(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	for _, in := range []string{"w-7", "w-100"} {
		_, err := db.Complete(ctx, state.Run{ID: "before-" + in, Flow: "f", Input: in, Status: state.StatusSucceeded, Started: time.Now()})
		require.NoError(t, err)
	}
	var runs []state.Run
	for i := range 150 {
		runs = append(runs, state.Run{ID: fmt.Sprint("run-", i), Flow: "f", Input: fmt.Sprint("w-", i), Status: state.StatusSucceeded, Started: time.Now()})
	}
	runs = append(runs, state.Run{ID: "twice", Flow: "f", Input: "w-42", Status: state.StatusDeadLettered, Started: time.Now()})
	// Another flow's input of the same name is no duplicate.
	runs = append(runs, state.Run{ID: "other", Flow: "g", Input: "w-7", Status: state.StatusSucceeded, Started: time.Now()})
	dups, err := db.CompleteAll(ctx, runs)
	require.NoError(t, err)
	require.Len(t, dups, len(runs))
	for i, r := range runs {
		want := r.ID == "run-7" || r.ID == "run-100" || r.ID == "twice"
		assert.Equal(t, want, dups[i], "run %s (input %s/%s) duplicate", r.ID, r.Flow, r.Input)
	}
	inputs := make([]string, 0, 151)
	for i := range 151 {
		inputs = append(inputs, fmt.Sprint("w-", i))
	}
	done, err := db.CompletedAll(ctx, "f", inputs)
	require.NoError(t, err)
	assert.Len(t, done, 150, "w-150 was never completed")
	assert.Equal(t, "before-w-7", done["w-7"].Run)
	assert.Equal(t, "run-42", done["w-42"].Run, "the first of two completions in a window stands")
	assert.Equal(t, "run-149", done["w-149"].Run)
	assert.Equal(t, state.StatusSucceeded, done["w-149"].Status)
	other, err := db.CompletedAll(ctx, "g", []string{"w-7", "w-8"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"w-7": "other"}, map[string]string{"w-7": other["w-7"].Run})
	assert.Len(t, other, 1)

	// Inputs with quotes, backslashes and non-ASCII text are looked up as
	// they are.
	odd := []string{`a"b`, `c\d`, "é/ü", "tab\tx", "new\nline"}
	var oddRuns []state.Run
	for i, in := range odd {
		oddRuns = append(oddRuns, state.Run{ID: fmt.Sprint("odd-", i), Flow: "f", Input: in, Status: state.StatusSucceeded, Started: time.Now()})
	}
	_, err = db.CompleteAll(ctx, oddRuns)
	require.NoError(t, err)
	done, err = db.CompletedAll(ctx, "f", odd)
	require.NoError(t, err)
	assert.Len(t, done, len(odd))
}

// mixedRunRecords writes a batch of run records of every shape at once —
// plain successes, failures with their step and error, answers of HTTP
// runs, and one run recorded twice — and reads each back as recorded, the
// later record of a run replacing the earlier.
func mixedRunRecords(t *testing.T, h Harness) {
	db := h.Open(t)
	defer db.Close()
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	steps := []state.StepRun{{ID: "t", Node: "transform", Status: "succeeded", Attempts: 1, Duration: time.Millisecond}}
	want := map[string]state.Run{}
	for i := range 150 {
		r := state.Run{ID: fmt.Sprintf("mix-%03d", i), Flow: "mix", Trigger: "topic:in", Input: fmt.Sprint("in-", i), Attempts: 1,
			Status: state.StatusSucceeded, Started: t0.Add(time.Duration(i) * time.Millisecond), Duration: 2 * time.Millisecond, Steps: steps, BytesIn: 10}
		switch {
		case i%7 == 3:
			r.Status, r.Step, r.Error, r.Attempts = state.StatusDeadLettered, "t", fmt.Sprintf("boom %d: \"quoted\" \n é", i), 3
		case i%11 == 5:
			r.HTTPStatus = 201
		}
		db.Record(r)
		want[r.ID] = r
	}
	// mix-002 failed first, then succeeded: the last record stands.
	again := want["mix-002"]
	db.Record(state.Run{ID: "mix-002", Flow: "mix", Trigger: "topic:in", Input: "in-2", Attempts: 1, Status: state.StatusFailed,
		Started: again.Started, Step: "t", Error: "transient"})
	again.Attempts = 2
	db.Record(again)
	want["mix-002"] = again
	require.NoError(t, db.Flush(ctx))

	got, err := db.Runs(ctx, state.Filter{Flow: "mix", Limit: 1000})
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for _, r := range got {
		w := want[r.ID]
		assert.Equal(t, w.Status, r.Status, r.ID)
		assert.Equal(t, w.Step, r.Step, r.ID)
		assert.Equal(t, w.Error, r.Error, r.ID)
		assert.Equal(t, w.Attempts, r.Attempts, r.ID)
		assert.Equal(t, w.HTTPStatus, r.HTTPStatus, r.ID)
		assert.Equal(t, w.Input, r.Input, r.ID)
		assert.Equal(t, w.Started, r.Started, r.ID)
		assert.Equal(t, w.BytesIn, r.BytesIn, r.ID)
		assert.Equal(t, w.Steps, r.Steps, r.ID)
	}
}

// unrecordedRuns: a run with NoRecord leaves its input's completion and no
// record, in a window with recorded runs; either kind of completion makes
// a later run of the input (either kind) a duplicate; nothing recreates
// the missing records; completions are durable and pruned.
func unrecordedRuns(t *testing.T, h Harness) {
	db := h.Open(t)
	ctx := t.Context()
	now := time.Now().UTC()
	quiet := func(id, in string) state.Run {
		return state.Run{ID: id, Flow: "f", Input: in, Status: state.StatusSucceeded, Started: now, NoRecord: true}
	}
	_, err := db.CompleteAll(ctx, []state.Run{
		{ID: "loud-first", Flow: "f", Input: "loud-in", Status: state.StatusSucceeded, Started: now},
		quiet("quiet-first", "quiet-in"),
		quiet("quiet-only", "quiet-only-in"),
	})
	require.NoError(t, err)
	var runs []state.Run
	for i := range 100 {
		runs = append(runs, quiet(fmt.Sprint("q-", i), fmt.Sprint("in-", i)))
	}
	runs = append(runs,
		state.Run{ID: "failed", Flow: "f", Input: "bad-in", Status: state.StatusDeadLettered, Started: now, Error: "boom"},
		quiet("quiet-again", "loud-in"), // completed by a recorded run
		state.Run{ID: "loud-again", Flow: "f", Input: "quiet-in", Status: state.StatusSucceeded, Started: now}, // by a quiet one
		quiet("quiet-twice", "in-3"),           // earlier in the window
		quiet("quiet-repeat", "quiet-only-in"), // by a quiet one, and only quiet runs name it here
	)
	inputs := []string{"loud-in", "quiet-in", "quiet-only-in", "bad-in", "never"}
	odd := "bad\xffutf8" // SQLite looks it up by bound values, not JSON (PostgreSQL refuses it as text)
	if h.LedgerInRuns {
		runs = append(runs, quiet("odd", odd))
		inputs = append(inputs, odd)
	}
	dups, err := db.CompleteAll(ctx, runs)
	require.NoError(t, err)
	for i, r := range runs {
		want := r.ID == "quiet-again" || r.ID == "loud-again" || r.ID == "quiet-twice" || r.ID == "quiet-repeat"
		assert.Equal(t, want, dups[i], "run %s (input %s) duplicate", r.ID, r.Input)
	}
	if h.LedgerInRuns {
		// A quiet repeat of an input JSON cannot carry, alone in its window.
		dups, err = db.CompleteAll(ctx, []state.Run{quiet("odd-again", odd), quiet("odd-neighbour", "odd-neighbour-in")})
		require.NoError(t, err)
		assert.Equal(t, []bool{true, false}, dups, "odd-again is a duplicate, its neighbour is not")
		inputs = append(inputs, "odd-neighbour-in")
	}
	db.Record(quiet("recorded-later", "elsewhere")) // Record drops it too
	require.NoError(t, db.Flush(ctx))

	for i := range 100 {
		inputs = append(inputs, fmt.Sprint("in-", i))
	}
	done, err := db.CompletedAll(ctx, "f", inputs)
	require.NoError(t, err)
	assert.Len(t, done, len(inputs)-1, "every input but never")
	assert.Equal(t, "loud-first", done["loud-in"].Run)
	assert.Equal(t, "quiet-first", done["quiet-in"].Run)
	assert.Equal(t, "quiet-only", done["quiet-only-in"].Run, "a quiet repeat leaves the first completion")
	assert.Equal(t, "q-3", done["in-3"].Run, "the first of two completions in a window stands")
	assert.Equal(t, state.StatusSucceeded, done["in-99"].Status)
	assert.Equal(t, state.StatusDeadLettered, done["bad-in"].Status)
	if h.LedgerInRuns {
		assert.Equal(t, "odd", done[odd].Run)
	}
	c, ok, err := db.Completed(ctx, "f", "in-42")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "q-42", c.Run)

	recorded, err := db.Runs(ctx, state.Filter{Flow: "f"})
	require.NoError(t, err)
	var ids []string
	for _, r := range recorded {
		ids = append(ids, r.ID+":"+r.Status)
	}
	assert.ElementsMatch(t, []string{"loud-first:succeeded", "failed:dead_lettered", "loud-again:duplicate"}, ids,
		"only the recorded runs, a duplicate of a quiet completion among them")
	n, err := db.RecoverRuns(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "no record is missing: the quiet runs asked for none")
	require.NoError(t, db.Close())

	db = h.Open(t)
	defer db.Close()
	_, ok, err = db.Completed(ctx, "f", "in-7")
	require.NoError(t, err)
	assert.True(t, ok, "durable across a reopen")
	_, err = db.Prune(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	done, err = db.CompletedAll(ctx, "f", inputs)
	require.NoError(t, err)
	assert.Empty(t, done, "pruned with the runs")
}
