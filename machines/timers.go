package machines

import (
	"context"
	"database/sql"
	"time"
)

// scanDue reads claimed timers: those whose entity is still at their
// version are due, the others stale.
func scanDue(rows *sql.Rows, machine string) (due, stale []Timer, err error) {
	defer rows.Close()
	for rows.Next() {
		t := Timer{Machine: machine}
		var ms int64
		var current bool
		if err := rows.Scan(&t.Key, &t.Version, &t.Event, &t.State, &t.Topic, &ms, &current); err != nil {
			return nil, nil, err
		}
		t.Due = time.UnixMilli(ms).UTC()
		if current {
			due = append(due, t)
		} else {
			stale = append(stale, t)
		}
	}
	return due, stale, rows.Err()
}

// finishDue fires the due timers and marks them, and the stale ones, in
// tx, then commits.
func finishDue(ctx context.Context, tx *sql.Tx, postgres bool, now time.Time, due, stale []Timer, fire func(context.Context, []Timer) error) (int, error) {
	if len(due) == 0 && len(stale) == 0 {
		return 0, nil
	}
	if len(due) > 0 {
		if err := fire(ctx, due); err != nil {
			return 0, err
		}
	}
	q := `UPDATE timers SET status = ?, done_ms = ? WHERE machine = ? AND key = ? AND version = ? AND event = ?`
	if postgres {
		q = `UPDATE timers SET status = $1, done_ms = $2 WHERE machine = $3 AND key = $4 AND version = $5 AND event = $6`
	}
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	for status, ts := range map[string][]Timer{"fired": due, "stale": stale} {
		for _, t := range ts {
			if _, err := st.ExecContext(ctx, status, now.UnixMilli(), t.Machine, t.Key, t.Version, t.Event); err != nil {
				return 0, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return len(due), nil
}

func listTimers(ctx context.Context, db *sql.DB, postgres bool, machine, key string) ([]Timer, []bool, error) {
	q := `SELECT version, event, state, topic, due_ms, status = 'fired' FROM timers WHERE machine = ? AND key = ? ORDER BY due_ms, version, event`
	if postgres {
		q = `SELECT version, event, state, topic, due_ms, status = 'fired' FROM timers WHERE machine = $1 AND key = $2 ORDER BY due_ms, version, event`
	}
	rows, err := db.QueryContext(ctx, q, machine, key)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var ts []Timer
	var fired []bool
	for rows.Next() {
		t := Timer{Machine: machine, Key: key}
		var ms int64
		var f bool
		if err := rows.Scan(&t.Version, &t.Event, &t.State, &t.Topic, &ms, &f); err != nil {
			return nil, nil, err
		}
		t.Due = time.UnixMilli(ms).UTC()
		ts = append(ts, t)
		fired = append(fired, f)
	}
	return ts, fired, rows.Err()
}
