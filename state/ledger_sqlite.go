package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The SQLite ledger: a run record whose status is succeeded or
// dead_lettered is its input's completion (completionsInRuns); a run
// without a record (Run.NoRecord) completes its input with a small row
// in the completions table (unrecordedCompletions), a third of the cost
// of a record with its indexes. A lookup reads both. A window's runs are
// written in the transaction that completes their inputs, after looking
// their inputs up in it: one row per input, one commit per window. Every statement execution and every bound value is a call from
// Go into C, which costs more here than SQLite's own work on a small row,
// so a window's lookup binds its inputs as one JSON array and its records
// go in multi-row inserts (runInserts).

// completedStatuses is the SQL list of the statuses that complete an input.
const completedStatuses = `('` + StatusSucceeded + `', '` + StatusDeadLettered + `')`

// lookupSQL reads the completions of one flow among the inputs in a JSON
// array (?1 the array, read once; ?2 the flow), from the run records
// and the completions table, oldest run last (the first wins in
// scanCompletions). The run records are read through the runs_input
// index (named: without statistics the planner would take
// runs_flow_started and read every run of the flow).
const lookupSQL = `WITH inputs(input) AS MATERIALIZED (SELECT value FROM json_each(?1))
	SELECT input, id, status, started_ms + duration_us / 1000 FROM runs INDEXED BY runs_input
	WHERE input IN inputs AND flow = ?2 AND status IN ` + completedStatuses + `
	UNION ALL SELECT input, run_id, status, done_ms FROM completions
	WHERE flow = ?2 AND input IN inputs ORDER BY 2 DESC`

// sqliteLedger holds the SQLite ledger's prepared statement.
type sqliteLedger struct {
	db     *sql.DB
	lookup *sql.Stmt // the completions of one flow among a JSON array of inputs
}

func prepareSQLiteLedger(ctx context.Context, db *sql.DB) (*sqliteLedger, error) {
	l := &sqliteLedger{db: db}
	var err error
	l.lookup, err = db.PrepareContext(ctx, lookupSQL)
	return l, err
}

// commit completes the batch's inputs in tx, writeMu held: it sets each
// completion's dup (its input completed by another run before, or
// earlier in the batch) and writes every run's record, a duplicate's
// marked so (markDuplicate).
func (d *DB) commitSQLite(tx *sql.Tx, batch []completion) error {
	inputs := map[string][]string{} // flow → inputs
	for _, c := range batch {
		inputs[c.run.Flow] = append(inputs[c.run.Flow], c.run.Input)
	}
	stored := make(map[[2]string]string, len(batch)) // flow, input → the run that completed it
	for flow, in := range inputs {
		done, err := d.ledger.lookupTx(context.Background(), tx, flow, in)
		if err != nil {
			return err
		}
		for input, c := range done {
			stored[[2]string{flow, input}] = c.Run
		}
	}
	runs := make([]*Run, 0, len(batch))
	var quiet []*Run // completions without a record
	for _, c := range batch {
		r := c.run
		k := [2]string{r.Flow, r.Input}
		first, ok := stored[k]
		if !ok && completes(r.Status) {
			first, stored[k] = r.ID, r.ID
		}
		*c.dup = ok && first != r.ID
		switch {
		case r.NoRecord:
			if !*c.dup && completes(r.Status) {
				quiet = append(quiet, r)
			}
			continue
		case *c.dup:
			dup := *r // the caller's run stays as it ran
			markDuplicate(&dup)
			r = &dup
		}
		runs = append(runs, r)
	}
	if err := d.runIns.complete(tx, quiet); err != nil {
		return err
	}
	return d.writeRuns(tx, runs)
}

// completes reports whether a run of this status completes its input.
func completes(status string) bool {
	return status == StatusSucceeded || status == StatusDeadLettered
}

// lookupTx returns the completions of flow among inputs, read in tx (nil:
// outside a transaction).
func (l *sqliteLedger) lookupTx(ctx context.Context, tx *sql.Tx, flow string, inputs []string) (map[string]Completion, error) {
	q := queryer(l.db)
	if tx != nil {
		q = tx
	}
	for _, in := range inputs {
		if !jsonSafe(in) {
			// JSON would not carry it as it is (invalid UTF-8 becomes
			// U+FFFD): bind each input instead.
			args := make([]any, 0, len(inputs)+1)
			args = append(args, flow)
			for _, in := range inputs {
				args = append(args, in)
			}
			var b strings.Builder
			for i := range inputs {
				fmt.Fprintf(&b, ",?%d", i+2)
			}
			list := "(" + b.String()[1:] + ")"
			rows, err := q.QueryContext(ctx, `SELECT input, id, status, started_ms + duration_us / 1000 FROM runs INDEXED BY runs_input
				WHERE flow = ?1 AND input IN `+list+` AND status IN `+completedStatuses+`
				UNION ALL SELECT input, run_id, status, done_ms FROM completions WHERE flow = ?1 AND input IN `+list+` ORDER BY 2 DESC`, args...)
			return scanCompletions(rows, err, flow, len(inputs))
		}
	}
	list, err := json.Marshal(inputs)
	if err != nil {
		return nil, err
	}
	st := l.lookup
	if tx != nil {
		st = tx.Stmt(st)
	}
	rows, err := st.QueryContext(ctx, string(list), flow)
	return scanCompletions(rows, err, flow, len(inputs))
}

// queryer is what lookupTx queries: the database or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// jsonSafe reports whether s goes through a JSON string and SQLite's
// json_each unchanged: valid UTF-8 without NUL.
func jsonSafe(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}
