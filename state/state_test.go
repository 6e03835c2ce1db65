package state_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/state/statetest"
)

func TestSQLite(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Harness {
		path := filepath.Join(t.TempDir(), "state.db")
		openErr := func(t *testing.T) (*state.DB, error) { return state.OpenURL(t.Context(), "sqlite://"+path) }
		return statetest.Harness{
			LedgerInRuns: true,
			OpenErr:      openErr,
			Open: func(t *testing.T) *state.DB {
				db, err := openErr(t)
				require.NoError(t, err)
				t.Cleanup(func() { db.Close() })
				return db
			},
			Exec: func(t *testing.T, q string, args ...any) {
				raw, err := sql.Open("sqlite3", path)
				require.NoError(t, err)
				defer raw.Close()
				_, err = raw.Exec(q, args...)
				require.NoError(t, err)
			},
		}
	})
}

func TestPostgres(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Harness {
		url := pgtest.URL(t)
		openErr := func(t *testing.T) (*state.DB, error) { return state.OpenURL(t.Context(), url) }
		return statetest.Harness{
			OpenErr: openErr,
			Open: func(t *testing.T) *state.DB {
				db, err := openErr(t)
				require.NoError(t, err)
				t.Cleanup(func() { db.Close() })
				return db
			},
			Exec: func(t *testing.T, q string, args ...any) {
				conn, err := pgx.Connect(t.Context(), url)
				require.NoError(t, err)
				defer conn.Close(t.Context())
				_, err = conn.Exec(t.Context(), q, args...)
				require.NoError(t, err)
			},
		}
	})
}

// legacyFile makes a state file as releases before schema versioning
// did (runs without the later columns), runs more SQL in it, and returns
// its path.
func legacyFile(t *testing.T, more string) string {
	path := filepath.Join(t.TempDir(), "state.db")
	raw, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Exec(`CREATE TABLE runs (id TEXT PRIMARY KEY, flow TEXT NOT NULL, trigger TEXT NOT NULL, input TEXT NOT NULL,
		attempts INTEGER NOT NULL, status TEXT NOT NULL, started_ms INTEGER NOT NULL, duration_us INTEGER NOT NULL,
		step TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', steps TEXT NOT NULL DEFAULT '[]');
		` + more)
	require.NoError(t, err)
	return path
}

// TestLegacySQLiteFileIsTakenOver: a state file made before schema
// versioning (no schema_version table, runs without the later columns)
// opens, gains the columns and is at the current version.
func TestLegacySQLiteFileIsTakenOver(t *testing.T) {
	path := legacyFile(t, `INSERT INTO runs (id, flow, trigger, input, attempts, status, started_ms, duration_us) VALUES ('old', 'f', 't', 'i', 1, 'succeeded', 1, 0)`)
	db, err := state.Open(path)
	require.NoError(t, err)
	defer db.Close()
	runs, err := db.Runs(t.Context(), state.Filter{})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, "old", runs[0].ID)
}

// TestSQLiteCompletionsMoveIntoRuns: a state file whose completions were
// rows of their own (before completionsInRuns) keeps every completion: a
// completion whose run record a crash lost becomes a record, an accepted
// record whose final one was lost takes the completion's status, and the
// inputs stay completed.
func TestSQLiteCompletionsMoveIntoRuns(t *testing.T) {
	path := legacyFile(t, `CREATE TABLE completions (flow TEXT NOT NULL, input TEXT NOT NULL, run_id TEXT NOT NULL, status TEXT NOT NULL,
			done_ms INTEGER NOT NULL, PRIMARY KEY (flow, input)) WITHOUT ROWID;
		INSERT INTO runs (id, flow, trigger, input, attempts, status, started_ms, duration_us) VALUES
			('kept', 'f', 'topic:t', 'm1', 1, 'succeeded', 1000, 0),
			('dup', 'f', 'topic:t', 'm1', 1, 'duplicate', 1500, 0),
			('async', 'f', 'http:/x', 'req-1', 1, 'accepted', 2000, 0),
			('retried', 'f', 'topic:t', 'm4', 1, 'failed', 2500, 0);
		INSERT INTO completions (flow, input, run_id, status, done_ms) VALUES
			('f', 'm1', 'kept', 'succeeded', 1001),
			('f', 'req-1', 'async', 'succeeded', 2001),
			('f', 'm3', 'lost', 'dead_lettered', 3000)`)

	db, err := state.Open(path)
	require.NoError(t, err)
	defer db.Close()
	ctx := t.Context()
	for input, want := range map[string]string{"m1": "kept", "req-1": "async", "m3": "lost"} {
		c, done, err := db.Completed(ctx, "f", input)
		require.NoError(t, err)
		require.True(t, done, input)
		assert.Equal(t, want, c.Run, input)
	}
	_, done, err := db.Completed(ctx, "f", "m4")
	require.NoError(t, err)
	assert.False(t, done, "a failed run completes nothing")
	runs, err := db.Runs(ctx, state.Filter{Flow: "f"})
	require.NoError(t, err)
	status := map[string]string{}
	for _, r := range runs {
		status[r.ID] = r.Status
	}
	assert.Equal(t, map[string]string{"kept": "succeeded", "dup": "duplicate", "async": "succeeded", "lost": "dead_lettered", "retried": "failed"}, status)
	dup, err := db.Complete(ctx, state.Run{ID: "again", Flow: "f", Input: "m3", Status: state.StatusSucceeded, Started: time.Now()})
	require.NoError(t, err)
	assert.True(t, dup, "a moved completion still makes a redelivery a duplicate")
}

// TestPostgresOneProcessPrunes: while another process holds the pruning
// advisory lock, Prune leaves the rows to it; once released, it prunes.
func TestPostgresOneProcessPrunes(t *testing.T) {
	url := pgtest.URL(t)
	db, err := state.OpenURL(t.Context(), url)
	require.NoError(t, err)
	defer db.Close()
	old := time.Now().Add(-48 * time.Hour)
	_, err = db.Complete(t.Context(), state.Run{ID: "r", Flow: "f", Input: "m", Status: state.StatusSucceeded, Started: old})
	require.NoError(t, err)
	require.NoError(t, db.Flush(t.Context()))

	other, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	defer other.Close(t.Context())
	const pruneLock = 0x736c756963650001 // state's pruneLockKey
	_, err = other.Exec(t.Context(), `SELECT pg_advisory_lock($1)`, int64(pruneLock))
	require.NoError(t, err)
	n, err := db.Prune(t.Context(), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, n, "another process is pruning")
	_, err = other.Exec(t.Context(), `SELECT pg_advisory_unlock($1)`, int64(pruneLock))
	require.NoError(t, err)
	n, err = db.Prune(t.Context(), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	assert.EqualValues(t, 2, n, "the run and its completion")
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:s%40cret@db:5432/x?sslmode=disable": "postgres://u:xxxxx@db:5432/x?sslmode=disable",
		"postgres://u@db/x":         "postgres://u@db/x",
		"sqlite://.sluice/state.db": "sqlite://.sluice/state.db",
	} {
		assert.Equal(t, want, state.Redact(in))
	}
}

// TestRetainWithoutRetentionOnlyOptimizes: keep 0 keeps every run; each
// pass still refreshes the statistics and reports.
func TestRetainWithoutRetentionOnlyOptimizes(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Complete(t.Context(), state.Run{ID: "old", Flow: "f", Input: "m", Status: state.StatusSucceeded, Started: time.Now().Add(-1000 * time.Hour)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	passes := make(chan error, 1)
	db.Retain(ctx, 0, time.Hour, func(n int64, err error) {
		assert.Zero(t, n)
		passes <- err
		cancel()
	})
	require.NoError(t, <-passes)
	runs, err := db.Runs(t.Context(), state.Filter{Flow: "f"})
	require.NoError(t, err)
	assert.Len(t, runs, 1, "nothing pruned")
}
