package state_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/mattn/go-sqlite3"
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
			OpenErr: openErr,
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

// TestLegacySQLiteFileIsTakenOver: a state file made before schema
// versioning (no schema_version table, runs without the later columns)
// opens, gains the columns and is at the current version.
func TestLegacySQLiteFileIsTakenOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	raw, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	_, err = raw.Exec(`CREATE TABLE runs (id TEXT PRIMARY KEY, flow TEXT NOT NULL, trigger TEXT NOT NULL, input TEXT NOT NULL,
		attempts INTEGER NOT NULL, status TEXT NOT NULL, started_ms INTEGER NOT NULL, duration_us INTEGER NOT NULL,
		step TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', steps TEXT NOT NULL DEFAULT '[]');
		INSERT INTO runs (id, flow, trigger, input, attempts, status, started_ms, duration_us) VALUES ('old', 'f', 't', 'i', 1, 'succeeded', 1, 0)`)
	require.NoError(t, err)
	require.NoError(t, raw.Close())
	db, err := state.Open(path)
	require.NoError(t, err)
	defer db.Close()
	runs, err := db.Runs(t.Context(), state.Filter{})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, "old", runs[0].ID)
}
