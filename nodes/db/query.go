package db

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/internal/dbident"
	"github.com/sluicehq/sluice/internal/sqlitedb"
	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "db.query",
		Summary: "Read rows from a SQLite or PostgreSQL database with a parameterized SELECT.",
		Description: "args are expressions bound to the query's ? placeholders, in order: values never become SQL. " +
			"The result (steps.<id>) is the list of rows, each an object by column name; with one: true it is the " +
			"first row, or null when there is none (route on it with switch). into also stores it in a payload field.",
		Fields: []nodes.Field{
			{Name: "database", Kind: nodes.String, Default: "data.db", Doc: "SQLite file (relative paths are inside the Sluice home, --home) or a postgres:// URL."},
			{Name: "query", Kind: nodes.String, Required: true, Doc: "A SELECT (or WITH … SELECT) with ? placeholders."},
			{Name: "args", Kind: nodes.StringList, Doc: "Expressions for the placeholders, in order."},
			{Name: "one", Kind: nodes.Bool, Default: false, Doc: "The first row only (null when none)."},
			{Name: "limit", Kind: nodes.Int, Default: 1000, Min: 1, Max: 1 << 20, Doc: "At most this many rows."},
			{Name: "into", Kind: nodes.String, Doc: "Payload field to store the result in (the payload must be an object or empty)."},
		},
		Examples: []nodes.Example{{Title: "One image's record", YAML: "node: db.query\nwith:\n  query: SELECT key, width, height FROM images WHERE key = ?\n  args: [request.params.id]\n  one: true"}},
		New:      newQuery,
	})
}

type query struct {
	target target
	sql    string
	args   []*eval.Program
	one    bool
	limit  int
	into   string
	db     *sql.DB
	stmt   *sql.Stmt
}

func newQuery(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	q := &query{sql: strings.TrimSpace(c.String("query")), one: c.Bool("one"), limit: c.Int("limit"), into: c.String("into")}
	head := strings.ToUpper(strings.Fields(q.sql + " x")[0])
	if head != "SELECT" && head != "WITH" {
		c.Problemf("query", "db.query reads: the query must be a SELECT (use db.insert to write)")
	}
	if n := strings.Count(q.sql, "?"); n != len(c.Strings("args")) {
		c.Problemf("args", "the query has %d placeholder(s) and %d arg(s)", n, len(c.Strings("args")))
	}
	for _, a := range c.Strings("args") {
		p, err := eval.Compile(a, false)
		if err != nil {
			c.Problemf("args", "%v", err)
			continue
		}
		q.args = append(q.args, p)
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	q.target = resolveTarget(c.String("database"), d.StateDir)
	q.sql = q.target.rebind(q.sql)
	return q, nil
}

// Start opens the database and prepares the query (a table that does not
// exist yet is an error here, at start, not at the first message).
func (q *query) Start(ctx context.Context) error {
	db, err := q.target.open(ctx)
	if err != nil {
		return fmt.Errorf("db.query: %w", err)
	}
	if !q.target.postgres {
		if err := dbident.Check(ctx, db, q.target.path, "rows"); err != nil {
			db.Close()
			return err
		}
	}
	q.db = db
	if q.stmt, err = db.PrepareContext(ctx, q.sql); err != nil {
		return fmt.Errorf("db.query: %s: %w", q.target, err)
	}
	if q.target.postgres {
		// Prepared to check it; run as text with the simple protocol.
		q.stmt.Close()
		q.stmt = nil
	}
	return nil
}

func (q *query) Close() error {
	if q.stmt != nil {
		q.stmt.Close()
	}
	if q.db != nil {
		return q.db.Close()
	}
	return nil
}

func (q *query) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	args := make([]any, len(q.args))
	for i, p := range q.args {
		v, err := p.EvalContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(fmt.Errorf("arg %d: %w", i+1, err))
		}
		if args[i], err = sqlValue(v); err != nil {
			return nodes.Permanent(fmt.Errorf("arg %d: %w", i+1, err))
		}
	}
	var rows *sql.Rows
	err := sqlitedb.WhileBusy(ctx, func() (err error) {
		if q.stmt != nil {
			rows, err = q.stmt.QueryContext(ctx, args...)
		} else {
			rows, err = q.db.QueryContext(ctx, q.sql, args...)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("db.query: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	out := []any{}
	for rows.Next() && len(out) < q.limit {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			row[c] = vals[i]
		}
		out = append(out, row)
		if q.one {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var res any = out
	if q.one {
		res = nil
		if len(out) > 0 {
			res = out[0]
		}
	}
	env.SetResult(res)
	if q.into != "" {
		return env.SetPayloadField(q.into, res)
	}
	return nil
}

var (
	_ nodes.Node    = (*query)(nil)
	_ nodes.Starter = (*query)(nil)
	_ nodes.Closer  = (*query)(nil)
)
