package db_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// TestPostgresInsertAndQuery: db.insert and db.query on a PostgreSQL
// database: the table is created, a redelivered run rewrites its row
// (upsert on the key), a column is added, values are parameters (a
// hostile string stays a string), and db.query reads rows back.
func TestPostgresInsertAndQuery(t *testing.T) {
	url := pgtest.URL(t)
	deps := nodes.Deps{StateDir: t.TempDir()}
	with := `{database: "` + url + `", table: images, key: [key], columns: {key: payload.key, width: payload.w, tags: payload.tags}}`
	n := start(t, with, deps)
	insert(t, n, map[string]any{"key": "a.jpg", "w": 256, "tags": []any{"x"}})
	insert(t, n, map[string]any{"key": "a.jpg", "w": 300, "tags": []any{"x", "y"}})
	insert(t, n, map[string]any{"key": "b'); DROP TABLE images; --", "w": 1, "tags": nil})

	n2 := start(t, `{database: "`+url+`", table: images, key: [key], columns: {key: payload.key, note: payload.note}}`, deps)
	insert(t, n2, map[string]any{"key": "c.jpg", "note": "added column"})

	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var count int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM images`).Scan(&count))
	assert.Equal(t, 3, count)
	var width, tags string
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT width, tags FROM images WHERE key = 'a.jpg'`).Scan(&width, &tags))
	assert.Equal(t, "300", width, "the redelivered run replaced its row")
	assert.JSONEq(t, `["x","y"]`, tags)

	q := nodestest.New(t, "db.query", `{database: "`+url+`", query: "SELECT key, width FROM images WHERE key = ? OR note = ? ORDER BY key", args: [payload.k, payload.n]}`, deps)
	require.NoError(t, q.(nodes.Starter).Start(t.Context()))
	t.Cleanup(func() { q.(nodes.Closer).Close() })
	env := nodestest.Envelope(nil, 0, "q")
	env.Payload = map[string]any{"k": "a.jpg", "n": "added column"}
	require.NoError(t, q.Process(t.Context(), env))
	assert.Equal(t, []any{
		map[string]any{"key": "a.jpg", "width": "300"},
		map[string]any{"key": "c.jpg", "width": nil},
	}, env.Steps["q"])

	bad := nodestest.New(t, "db.query", `{database: "`+url+`", query: "SELECT x FROM missing_table"}`, deps)
	err = bad.(nodes.Starter).Start(t.Context())
	require.Error(t, err, "a missing table fails at start")
	assert.NotContains(t, err.Error(), "password")
	bad.(nodes.Closer).Close()
}

// TestPostgresInsertKeyConflictError: on_conflict: error is a permanent
// failure naming the table.
func TestPostgresInsertKeyConflictError(t *testing.T) {
	url := pgtest.URL(t)
	n := start(t, `{database: "`+url+`", table: t1, key: [k], on_conflict: error, columns: {k: payload.k}}`, nodes.Deps{StateDir: t.TempDir()})
	insert(t, n, map[string]any{"k": "a"})
	env := nodestest.Envelope(nil, 0, "rec")
	env.Payload = map[string]any{"k": "a"}
	err := n.Process(t.Context(), env)
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "insert into t1: a row with this key exists")
}
