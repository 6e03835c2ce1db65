// Package db holds the database nodes: rows written to SQLite files or
// PostgreSQL databases, through parameterized statements only.
package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/internal/dbident"
	"github.com/sluicehq/sluice/internal/sqlitedb"
	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "db.insert",
		Summary: "Write a row into a SQLite or PostgreSQL table (created if missing), one column per expression.",
		Description: "Values are bound as statement parameters, never spliced into SQL. The table is created " +
			"on start if missing, and columns the flow names that the table lacks are added. With key " +
			"columns, a retried or redelivered run writes the same row again instead of a second one " +
			"(on_conflict: replace, the default, or ignore). Objects and lists are stored as JSON text. " +
			"The result holds table, rowid (SQLite) and rows (rows affected). On PostgreSQL (database: postgres://…) " +
			"created tables and added columns are TEXT (create the table yourself for other types) and values " +
			"are converted to the column's type by the server.",
		Fields: []nodes.Field{
			{Name: "database", Kind: nodes.String, Default: "data.db", Doc: "SQLite file (relative paths are inside the Sluice home, --home) or a postgres:// URL (${ENV} substitution keeps the password out of the flow)."},
			{Name: "table", Kind: nodes.String, Required: true, Doc: "Table name (letters, digits, underscore)."},
			{Name: "columns", Kind: nodes.Map, Elem: nodes.Expr, Required: true, Doc: "Column name → expression for its value."},
			{Name: "key", Kind: nodes.StringList, Doc: "Columns identifying a row (a UNIQUE constraint): what makes re-runs idempotent."},
			{Name: "on_conflict", Kind: nodes.Enum, Options: []string{"replace", "ignore", "error"}, Default: "replace", Doc: "When a row with the same key exists: replace it, keep it, or fail permanently."},
			{Name: insertLineage, Kind: nodes.String, Doc: "Also write the id of the run that wrote the row to this column (lineage: `sluice runs show ID --tree`), e.g. run_id."},
		},
		Examples: []nodes.Example{{Title: "Record a thumbnail", YAML: "node: db.insert\nwith:\n  table: images\n  key: [key]\n  columns:\n    key: object.key\n    width: steps.thumb.width\n    height: steps.thumb.height\n    thumbnail: steps.save.key"}},
		New:      newInsert,
	})
}

const insertLineage = "lineage_column"

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// quote quotes an identifier already checked against ident.
func quote(name string) string { return `"` + name + `"` }

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}

type insert struct {
	target     target
	table      string
	sqlText    string
	cols       []string
	exprs      []*eval.Program
	key        []string
	onConflict string

	db   *sql.DB
	stmt *sql.Stmt
}

func newInsert(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	n := &insert{table: c.String("table"), key: c.Strings("key"), onConflict: c.String("on_conflict")}
	if !ident.MatchString(n.table) || strings.HasPrefix(strings.ToLower(n.table), "sqlite_") {
		c.Problemf("table", "%q is not a table name: use letters, digits and underscores, starting with a letter", n.table)
	}
	for _, e := range c.Map("columns") {
		if !ident.MatchString(e.Key) {
			c.ProblemAt(e.Pos, "columns", "column %q: use letters, digits and underscores, starting with a letter", e.Key)
			continue
		}
		n.cols = append(n.cols, e.Key)
		n.exprs = append(n.exprs, e.Value.(*eval.Program))
	}
	if lc := c.String(insertLineage); lc != "" {
		switch {
		case !ident.MatchString(lc):
			c.Problemf(insertLineage, "%q is not a column name: use letters, digits and underscores, starting with a letter", lc)
		case slices.Contains(n.cols, lc):
			c.Problemf(insertLineage, "column %q is also in columns: name another", lc)
		default:
			n.cols = append(n.cols, lc)
			n.exprs = append(n.exprs, nil) // the run's id
		}
	}
	for _, k := range n.key {
		if !slices.Contains(n.cols, k) {
			c.Problemf("key", "key column %q is not one of the columns", k)
		}
	}
	if len(n.key) == 0 && c.Has("on_conflict") {
		c.Problemf("on_conflict", "conflicts need key columns: set key")
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	n.target = resolveTarget(c.String("database"), d.StateDir)
	return n, nil
}

// Start opens the database, creates the table or adds missing columns, and
// prepares the insert.
func (n *insert) Start(ctx context.Context) error {
	db, err := n.target.open(ctx)
	if err != nil {
		return fmt.Errorf("db.insert: %w", err)
	}
	if !n.target.postgres {
		if err := dbident.Check(ctx, db, n.target.path, "rows"); err != nil {
			db.Close()
			return err
		}
	}
	n.db = db
	colType := ""
	if n.target.postgres {
		colType = " TEXT" // SQLite columns need no type; PostgreSQL's do
	}
	defs := make([]string, len(n.cols))
	for i, c := range n.cols {
		defs[i] = quote(c) + colType
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+quote(n.table)+" ("+strings.Join(defs, ", ")+")"); err != nil {
		return fmt.Errorf("db.insert: create table %s in %s: %w", n.table, n.target, err)
	}
	have, err := n.columns(ctx)
	if err != nil {
		return err
	}
	for _, c := range n.cols {
		if !have[strings.ToLower(c)] {
			if _, err := db.ExecContext(ctx, "ALTER TABLE "+quote(n.table)+" ADD COLUMN "+quote(c)+colType); err != nil {
				return fmt.Errorf("db.insert: add column %s to %s: %w", c, n.table, err)
			}
		}
	}
	sqlText := "INSERT INTO " + quote(n.table) + " (" + quoteList(n.cols) + ") VALUES (" + strings.Repeat("?, ", len(n.cols)-1) + "?)"
	if len(n.key) > 0 {
		// An index rather than a table constraint: it also applies to a
		// table created before the flow had a key.
		if _, err := db.ExecContext(ctx, "CREATE UNIQUE INDEX IF NOT EXISTS "+quote(n.table+"_key")+" ON "+quote(n.table)+" ("+quoteList(n.key)+")"); err != nil {
			return fmt.Errorf("db.insert: unique key on %s: %w", n.table, err)
		}
		var sets []string
		for _, c := range n.cols {
			if !slices.Contains(n.key, c) {
				sets = append(sets, quote(c)+" = excluded."+quote(c))
			}
		}
		switch {
		case n.onConflict == "replace" && len(sets) > 0:
			sqlText += " ON CONFLICT (" + quoteList(n.key) + ") DO UPDATE SET " + strings.Join(sets, ", ")
		case n.onConflict != "error":
			sqlText += " ON CONFLICT (" + quoteList(n.key) + ") DO NOTHING"
		}
	}
	n.sqlText = n.target.rebind(sqlText)
	if n.target.postgres {
		return nil // the simple protocol runs the text each time
	}
	n.stmt, err = db.PrepareContext(ctx, n.sqlText)
	if err != nil {
		return fmt.Errorf("db.insert: prepare insert into %s: %w", n.table, err)
	}
	return nil
}

func (n *insert) columns(ctx context.Context) (map[string]bool, error) {
	q := "SELECT name FROM pragma_table_info(?)"
	if n.target.postgres {
		q = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
	}
	rows, err := n.db.QueryContext(ctx, q, n.table)
	if err != nil {
		return nil, fmt.Errorf("db.insert: columns of %s: %w", n.table, err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		have[strings.ToLower(name)] = true
	}
	return have, rows.Err()
}

func (n *insert) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	args := make([]any, len(n.exprs))
	for i, p := range n.exprs {
		if p == nil {
			args[i] = env.Run // lineage_column
			continue
		}
		v, err := p.EvalContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(fmt.Errorf("column %s: %w", n.cols[i], err))
		}
		if args[i], err = sqlValue(v); err != nil {
			return nodes.Permanent(fmt.Errorf("column %s: %w", n.cols[i], err))
		}
	}
	var res sql.Result
	err := sqlitedb.WhileBusy(ctx, func() (err error) {
		if n.stmt != nil {
			res, err = n.stmt.ExecContext(ctx, args...)
		} else {
			res, err = n.db.ExecContext(ctx, n.sqlText, args...)
		}
		return err
	})
	if err != nil {
		if isUnique(err) {
			return nodes.Permanent(fmt.Errorf("insert into %s: a row with this key exists (on_conflict: error): %w", n.table, err))
		}
		return fmt.Errorf("insert into %s: %w", n.table, err)
	}
	id, _ := res.LastInsertId()
	rows, _ := res.RowsAffected()
	env.SetResult(map[string]any{"table": n.table, "rowid": id, "rows": rows})
	return nil
}

// sqlValue maps an expression value to what SQLite stores: scalars as
// themselves, times as RFC 3339 text, objects and lists as JSON text.
func sqlValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, int, int64, float64, []byte:
		return x, nil
	case int32, int16, int8, uint8, uint16, uint32, uint, uint64, float32:
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case time.Duration:
		return x.Seconds(), nil
	case map[string]any, []any:
		b, err := json.Marshal(x)
		return string(b), err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot store a %T", v)
	}
	return string(b), nil
}

func (n *insert) Close() error {
	if n.stmt != nil {
		n.stmt.Close()
	}
	if n.db != nil {
		return n.db.Close()
	}
	return nil
}

var (
	_ nodes.Node    = (*insert)(nil)
	_ nodes.Starter = (*insert)(nil)
	_ nodes.Closer  = (*insert)(nil)
)
