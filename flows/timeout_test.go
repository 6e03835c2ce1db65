package flows_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// stubborn ignores its context: it returns only when released.
type stubborn struct{ release chan struct{} }

func (s stubborn) Process(context.Context, *nodes.Envelope) error {
	<-s.release
	return nil
}

// timeoutMargin is how far past its timeout a step may end here: the
// engine waits abandonAfter (50 ms) for a node to return on its own, then
// abandons it; the rest is room for a loaded machine's scheduling. What
// a timeout that does not hold costs is far longer (the nodes below never
// return, or wait on a lock held to the end, or resize for seconds).
const timeoutMargin = time.Second

// stepDuration returns the recorded duration and error of the step id of
// the flow's one dead-lettered run.
func stepOf(t *testing.T, h *harness, flow, id string) state.StepRun {
	t.Helper()
	runs := h.waitRuns(state.Filter{Flow: flow, Status: state.StatusDeadLettered}, 1)
	for _, s := range runs[0].Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", id, runs[0])
	return state.StepRun{}
}

// A node that ignores its context is abandoned at its timeout: each
// attempt fails as a timeout shortly after it, and the next attempt waits
// for the abandoned call to return before it touches the envelope.
func TestStepTimeoutHoldsForANodeIgnoringItsContext(t *testing.T) {
	release := make(chan struct{})
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.stubborn", Summary: "ignores its context",
		New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return stubborn{release: release}, nil },
	}))
	h := start(t, `
name: stubborn
on: {topic: jobs}
timeout: 2s
retry: {max_attempts: 1}
steps:
  - id: wait
    node: test.stubborn
    timeout: 200ms
`, reg)
	defer close(release)
	h.publish("jobs", `{}`)
	dl := h.consume("stubborn.dlq", 1)
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "step timed out")
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "abandoned")
	s := stepOf(t, h, "stubborn", "wait")
	assert.GreaterOrEqual(t, s.Duration, 200*time.Millisecond)
	assert.Less(t, s.Duration, 200*time.Millisecond+timeoutMargin, "the step ends within its timeout and a small margin")
	assert.Equal(t, 1.0, gauge(t, h, "sluice_step_abandoned_calls"), "the abandoned call is still running, and counted")
}

// db.insert waits for a locked database no longer than its step's
// timeout (SQLite's own busy handler would sleep through a cancelled
// context).
func TestStepTimeoutHoldsOnALockedSQLiteDatabase(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "data.db")
	h := startIn(t, dir, `
name: rows
on: {topic: rows}
retry: {max_attempts: 1}
steps:
  - id: save
    node: db.insert
    timeout: 300ms
    with:
      database: `+dbPath+`
      table: items
      columns: {id: payload.id}
`, nil)
	// Hold the database's write lock from another connection.
	lock, err := sql.Open("sqlite3", dbPath)
	require.NoError(t, err)
	defer lock.Close()
	conn, err := lock.Conn(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(t.Context(), "BEGIN IMMEDIATE")
	require.NoError(t, err)
	defer conn.ExecContext(context.Background(), "ROLLBACK")

	h.publish("rows", `{"id": 1}`)
	dl := h.consume("rows.dlq", 1)
	// The node gives up at its deadline ("database is locked", or the
	// deadline itself); on a loaded machine it may be a little late, and
	// the step is abandoned then.
	assert.Regexp(t, "locked|step timed out", dl[0].Metadata.Get(flows.MetaError))
	s := stepOf(t, h, "rows", "save")
	assert.Less(t, s.Duration, 300*time.Millisecond+timeoutMargin, "waited for the lock only as long as the step's timeout")
	// Either way the node stops waiting for the lock, which is still held:
	// no call of it is left running.
	require.Eventually(t, func() bool { return gauge(t, h, "sluice_step_abandoned_calls") == 0 }, 20*time.Second, 10*time.Millisecond,
		"db.insert went on waiting for the lock past its deadline")
}

// A resize far too big for its timeout fails at the timeout instead of
// running on and succeeding.
func TestStepTimeoutHoldsForAHugeResize(t *testing.T) {
	dir := t.TempDir()
	h := startIn(t, dir, `
name: big
on: {bucket: photos}
retry: {max_attempts: 1}
steps:
  - id: grow
    node: image.resize
    timeout: 50ms
    with: {width: 12000, height: 12000}
  - node: storage.put
    with: {bucket: out, key: '{{ object.key }}'}
`, nil)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "buckets", "photos", "a.jpg"), jpegBytes(t, 1200, 900), 0o644))
	dl := h.consume("big.dlq", 1)
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "step timed out")
	s := stepOf(t, h, "big", "grow")
	assert.Less(t, s.Duration, 50*time.Millisecond+timeoutMargin)
	_, err := os.Stat(filepath.Join(dir, "buckets", "out", "a.jpg"))
	assert.True(t, os.IsNotExist(err), "nothing was written")
}

// gauge reads a gauge's value.
func gauge(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}
