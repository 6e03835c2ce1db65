package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// The SQLite ledger's batches. Every statement execution and every bound
// value is a call from Go into C, which costs more here than SQLite's own
// work on a small row, so a window's completions go in statements of many
// rows, and a window's lookup binds its inputs as one JSON array.

// completionChunks are the row counts of the prepared multi-row inserts,
// largest first: a batch is cut into as many of the largest as fit, then
// the smaller ones, down to single rows.
var completionChunks = []int{64, 16, 4, 1}

// sqliteLedger holds the SQLite ledger's prepared statements.
type sqliteLedger struct {
	db     *sql.DB
	insert map[int]*sql.Stmt // rows → INSERT of that many completions
	lookup *sql.Stmt         // the completions of one flow among a JSON array of inputs
}

func prepareSQLiteLedger(ctx context.Context, db *sql.DB) (*sqliteLedger, error) {
	l := &sqliteLedger{db: db, insert: map[int]*sql.Stmt{}}
	for _, n := range completionChunks {
		q := `INSERT INTO completions (flow, input, run_id, status, done_ms) VALUES (?,?,?,?,?)` +
			strings.Repeat(",(?,?,?,?,?)", n-1) + ` ON CONFLICT DO NOTHING`
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		l.insert[n] = st
	}
	var err error
	l.lookup, err = db.PrepareContext(ctx, `SELECT input, run_id, status, done_ms FROM completions
		WHERE flow = ? AND input IN (SELECT value FROM json_each(?))`)
	return l, err
}

// commit inserts the batch's completions in tx and sets each one's dup.
// Inputs completed before (or twice in the batch) are left as they are;
// a chunk that inserted fewer rows than it holds is then resolved by
// reading back which run completed each of its inputs.
func (l *sqliteLedger) commit(tx *sql.Tx, batch []completion) error {
	args := make([]any, 0, completionChunks[0]*5)
	for len(batch) > 0 {
		n := completionChunks[len(completionChunks)-1]
		for _, c := range completionChunks {
			if c <= len(batch) {
				n = c
				break
			}
		}
		chunk := batch[:n]
		batch = batch[n:]
		args = args[:0]
		for _, c := range chunk {
			r := c.run
			args = append(args, r.Flow, r.Input, r.ID, r.Status, r.Started.Add(r.Duration).UnixMilli())
		}
		res, err := tx.Stmt(l.insert[n]).Exec(args...)
		if err != nil {
			return err
		}
		inserted, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if inserted == int64(n) {
			for _, c := range chunk {
				*c.dup = false
			}
			continue
		}
		if err := l.resolve(tx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// resolve sets dup for each completion of chunk whose input another run
// completed (the stored run is not its own).
func (l *sqliteLedger) resolve(tx *sql.Tx, chunk []completion) error {
	inputs := map[string][]string{} // flow → inputs
	for _, c := range chunk {
		inputs[c.run.Flow] = append(inputs[c.run.Flow], c.run.Input)
	}
	stored := map[[2]string]string{} // flow, input → run
	for flow, in := range inputs {
		done, err := l.lookupTx(context.Background(), tx, flow, in)
		if err != nil {
			return err
		}
		for input, c := range done {
			stored[[2]string{flow, input}] = c.Run
		}
	}
	for _, c := range chunk {
		*c.dup = stored[[2]string{c.run.Flow, c.run.Input}] != c.run.ID
	}
	return nil
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
			rows, err := q.QueryContext(ctx, `SELECT input, run_id, status, done_ms FROM completions WHERE flow = ? AND input IN (?`+
				strings.Repeat(",?", len(inputs)-1)+`)`, args...)
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
	rows, err := st.QueryContext(ctx, flow, string(list))
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
