package dbident_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/dbident"
	"github.com/sluicehq/sluice/internal/sqlitedb"
)

// open opens path and checks its identity, closing the database after.
func open(t *testing.T, path string) error {
	t.Helper()
	db, err := sqlitedb.Open(path, sqlitedb.SyncNormal)
	require.NoError(t, err)
	defer db.Close()
	err = dbident.Check(t.Context(), db, path, "queued messages")
	if err == nil {
		_, err = db.Exec(`CREATE TABLE IF NOT EXISTS data (x)`)
		require.NoError(t, err)
	}
	return err
}

func sidecarID(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(dbident.Sidecar(path))
	require.NoError(t, err)
	return string(b)
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "queue.db")
	require.NoError(t, open(t, path), "a new database")
	first := sidecarID(t, path)
	require.NoError(t, open(t, path), "the same database again")
	assert.Equal(t, first, sidecarID(t, path))

	// Emptied: refused, and left as it was.
	require.NoError(t, os.Truncate(path, 0))
	err := open(t, path)
	require.ErrorIs(t, err, dbident.ErrIdentityLost)
	assert.Contains(t, err.Error(), path+" has no Sluice identity")
	assert.Contains(t, err.Error(), "the queued messages it held are not in it")
	assert.Contains(t, err.Error(), "--accept-new-state")
	require.ErrorIs(t, open(t, path), dbident.ErrIdentityLost, "still refused on the next start")
	assert.Equal(t, first, sidecarID(t, path))

	// Deleted: the same.
	require.NoError(t, os.Remove(path))
	require.ErrorIs(t, open(t, path), dbident.ErrIdentityLost)

	// Accepted by the operator: a new identity.
	dbident.SetAcceptNew(true)
	require.NoError(t, open(t, path))
	dbident.SetAcceptNew(false)
	second := sidecarID(t, path)
	assert.NotEqual(t, first, second)
	require.NoError(t, open(t, path))

	// Replaced by another Sluice database.
	other := filepath.Join(t.TempDir(), "queue.db")
	require.NoError(t, open(t, other))
	body, err := os.ReadFile(other)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, body, 0o644))
	err = open(t, path)
	require.ErrorIs(t, err, dbident.ErrIdentityLost)
	assert.Contains(t, err.Error(), "replaced by another database")

	// A lost sidecar is written again from the database.
	require.NoError(t, os.Remove(dbident.Sidecar(other)))
	require.NoError(t, open(t, other))
	assert.FileExists(t, dbident.Sidecar(other))

	// A damaged sidecar is named.
	require.NoError(t, os.WriteFile(dbident.Sidecar(other), []byte("junk"), 0o644))
	assert.ErrorContains(t, open(t, other), "is not a database identity record")
}
