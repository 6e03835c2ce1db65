package state

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSQLiteRunsQueriesUseTheirIndexes: once a state file holds many runs
// of one flow, a query for a run by flow and input reads it through
// runs_input, not every run of the flow through runs_flow_started (the
// choice SQLite's planner makes without statistics): Open refreshes the
// statistics, and Optimize keeps them fresh.
func TestSQLiteRunsQueriesUseTheirIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	d, err := Open(path)
	require.NoError(t, err)
	explain := func(q string, args ...any) string {
		rows, err := d.db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, args...)
		require.NoError(t, err)
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			b.WriteString(detail + "\n")
		}
		require.NoError(t, rows.Err())
		return b.String()
	}
	plan := func(f Filter) string {
		q, args := d.runsQuery(f)
		return explain(q, args...)
	}
	byInput := Filter{Flow: "f", Input: "in-77", Status: StatusSucceeded, Limit: 1}

	runs := make([]Run, 3000)
	for i := range runs {
		runs[i] = Run{ID: fmt.Sprintf("r-%05d", i), Flow: "f", Input: fmt.Sprint("in-", i), Status: StatusSucceeded,
			Started: time.Now().Add(time.Duration(i) * time.Millisecond)}
	}
	for w := 0; w < len(runs); w += 500 {
		_, err := d.CompleteAll(t.Context(), runs[w:w+500])
		require.NoError(t, err)
	}
	require.NoError(t, d.Optimize(t.Context()))
	assert.Contains(t, plan(byInput), "USING INDEX runs_input", "after Optimize")
	require.NoError(t, d.Close())

	// A file whose statistics were never gathered gets them at Open.
	raw, err := Open(path)
	require.NoError(t, err)
	_, err = raw.db.ExecContext(t.Context(), "DROP TABLE sqlite_stat1")
	require.NoError(t, err)
	require.NoError(t, raw.Close())
	d, err = Open(path)
	require.NoError(t, err)
	defer d.Close()
	assert.Contains(t, plan(byInput), "USING INDEX runs_input", "after Open")
	got, err := d.Runs(t.Context(), byInput)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "r-00077", got[0].ID)

	// The completion ledger's lookup probes both of its indexes.
	lookup := explain(lookupSQL, `["in-1","in-2"]`, "f")
	assert.Contains(t, lookup, "USING INDEX runs_input")
	assert.Contains(t, lookup, "completions USING PRIMARY KEY (flow=? AND input=?)")
}
