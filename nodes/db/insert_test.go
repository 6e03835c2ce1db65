package db_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/db"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

func start(t *testing.T, with string, deps nodes.Deps) nodes.Node {
	t.Helper()
	n := nodestest.New(t, "db.insert", with, deps)
	require.NoError(t, n.(nodes.Starter).Start(t.Context()))
	t.Cleanup(func() { n.(nodes.Closer).Close() })
	return n
}

func insert(t *testing.T, n nodes.Node, payload map[string]any) *nodes.Envelope {
	t.Helper()
	env := nodestest.Envelope(nil, 0, "rec")
	env.Payload = payload
	require.NoError(t, n.Process(t.Context(), env))
	return env
}

func rows(t *testing.T, path, query string) [][]any {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	defer db.Close()
	r, err := db.Query(query)
	require.NoError(t, err)
	defer r.Close()
	cols, _ := r.Columns()
	var out [][]any
	for r.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, r.Scan(ptrs...))
		out = append(out, vals)
	}
	return out
}

func TestInsertCreatesTableAndUpserts(t *testing.T) {
	home := t.TempDir()
	deps := nodes.Deps{StateDir: home}
	n := start(t, `{table: images, key: [key], columns: {key: payload.key, width: payload.w, tags: payload.tags}}`, deps)
	env := insert(t, n, map[string]any{"key": "a.jpg", "w": 256, "tags": []any{"x", "y"}})
	assert.EqualValues(t, 1, env.Steps["rec"].(map[string]any)["rows"])
	insert(t, n, map[string]any{"key": "b.jpg", "w": 128})
	insert(t, n, map[string]any{"key": "a.jpg", "w": 300}) // a re-run: same row, new values

	db := filepath.Join(home, "data.db")
	assert.Equal(t, [][]any{{"a.jpg", int64(300), nil}, {"b.jpg", int64(128), nil}},
		rows(t, db, `SELECT key, width, tags FROM images ORDER BY key`))

	// Values are parameters: SQL in them is stored, not run.
	evil := `x'); DROP TABLE images; --`
	insert(t, n, map[string]any{"key": evil, "w": 1})
	assert.Len(t, rows(t, db, `SELECT key FROM images`), 3)

	// A later flow version with a new column adds it; ignore keeps rows.
	n2 := start(t, `{table: images, key: [key], on_conflict: ignore, columns: {key: payload.key, height: payload.h}}`, deps)
	insert(t, n2, map[string]any{"key": "b.jpg", "h": 99})
	insert(t, n2, map[string]any{"key": "c.jpg", "h": 50})
	assert.Equal(t, [][]any{{"b.jpg", nil}, {"c.jpg", int64(50)}},
		rows(t, db, `SELECT key, height FROM images WHERE key IN ('b.jpg', 'c.jpg') ORDER BY key`))
}

func TestInsertWithoutKeyAppendsAndErrorMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	n := start(t, `{database: `+path+`, table: events, columns: {kind: payload.kind, at: now()}}`, nodes.Deps{})
	insert(t, n, map[string]any{"kind": "a"})
	insert(t, n, map[string]any{"kind": "a"})
	assert.Len(t, rows(t, path, `SELECT kind, at FROM events`), 2)

	strict := start(t, `{database: `+path+`, table: users, key: [email], on_conflict: error, columns: {email: payload.email}}`, nodes.Deps{})
	insert(t, strict, map[string]any{"email": "a@b"})
	env := nodes.NewEnvelope(nil, 0)
	env.Payload = map[string]any{"email": "a@b"}
	err := strict.Process(t.Context(), env)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "a row with this key exists")
}

func TestInsertConfigErrors(t *testing.T) {
	_, err := nodestest.Build("db.insert", `{table: "images; drop", key: [nope], columns: {"bad name": payload.x, ok: payload.y}}`, nodes.Deps{})
	require.Error(t, err)
	assert.Len(t, nodestest.Problems(t, err), 3, "%v", err)
	_, err = nodestest.Build("db.insert", `{table: t, on_conflict: ignore, columns: {a: payload.a}}`, nodes.Deps{})
	assert.ErrorContains(t, err, "conflicts need key columns")
}

func TestQuery(t *testing.T) {
	home := t.TempDir()
	deps := nodes.Deps{StateDir: home}
	ins := start(t, `{table: images, key: [key], columns: {key: payload.key, width: payload.w}}`, deps)
	insert(t, ins, map[string]any{"key": "a", "w": 10})
	insert(t, ins, map[string]any{"key": "b", "w": 20})

	q := nodestest.New(t, "db.query", `{query: "SELECT key, width FROM images WHERE width >= ? ORDER BY key", args: [payload.min]}`, deps)
	require.NoError(t, q.(nodes.Starter).Start(t.Context()))
	defer q.(nodes.Closer).Close()
	env := insert(t, q, map[string]any{"min": 15})
	assert.Equal(t, []any{map[string]any{"key": "b", "width": int64(20)}}, env.Steps["rec"])

	one := nodestest.New(t, "db.query", `{query: "SELECT width FROM images WHERE key = ?", args: [payload.key], one: true, into: image}`, deps)
	require.NoError(t, one.(nodes.Starter).Start(t.Context()))
	defer one.(nodes.Closer).Close()
	env = insert(t, one, map[string]any{"key": "a"})
	assert.Equal(t, map[string]any{"width": int64(10)}, env.Payload.(map[string]any)["image"])
	env = insert(t, one, map[string]any{"key": "zz"})
	assert.Nil(t, env.Steps["rec"], "no row: null")

	_, err := nodestest.Build("db.query", `{query: "DELETE FROM images WHERE key = ?", args: [payload.key, payload.x]}`, deps)
	require.Error(t, err)
	assert.Len(t, nodestest.Problems(t, err), 2, "%v", err)
}

// TestInsertLineageColumn: lineage_column writes the id of the run that
// wrote the row; a re-run replacing the row records the new run.
func TestInsertLineageColumn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lineage.db")
	n := start(t, `{database: `+path+`, table: images, key: [key], lineage_column: run_id, columns: {key: payload.key}}`, nodes.Deps{})
	for _, run := range []string{"01FIRST", "01SECOND"} {
		env := nodestest.Envelope(nil, 0, "rec")
		env.Run = run
		env.Payload = map[string]any{"key": "a.jpg"}
		require.NoError(t, n.Process(t.Context(), env))
	}
	assert.Equal(t, [][]any{{"a.jpg", "01SECOND"}}, rows(t, path, `SELECT key, run_id FROM images`))

	_, err := nodestest.Build("db.insert", `{table: t, lineage_column: key, columns: {key: payload.key}}`, nodes.Deps{})
	assert.ErrorContains(t, err, `column "key" is also in columns`)
	_, err = nodestest.Build("db.insert", `{table: t, lineage_column: "run id", columns: {key: payload.key}}`, nodes.Deps{})
	assert.ErrorContains(t, err, "is not a column name")
}
