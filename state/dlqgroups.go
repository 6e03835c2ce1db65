package state

import (
	"context"
	"fmt"
	"time"
)

// DeadLetterGroup is the dead letters of one flow that failed in one step
// with one error: a cause to fix once and replay together.
type DeadLetterGroup struct {
	Flow  string    `json:"flow"`
	Step  string    `json:"step"`
	Error string    `json:"error"`
	Count int64     `json:"count"`
	First time.Time `json:"first"` // the oldest failure
	Last  time.Time `json:"last"`  // the newest failure
}

// DeadLetterGroups counts the dead letters matching f by flow, step and
// error text, the largest groups first (f.Limit groups, 200 by default).
func (d *DB) DeadLetterGroups(ctx context.Context, f DeadLetterFilter) ([]DeadLetterGroup, error) {
	w, args := f.where(d.dia)
	limit := f.Limit
	if limit <= 0 {
		limit = 200
	}
	rows, err := d.db.QueryContext(ctx, d.dia.q(`SELECT flow, step, error, COUNT(*), MIN(failed_ms), MAX(failed_ms) FROM dead_letters`+w+
		fmt.Sprintf(" GROUP BY flow, step, error ORDER BY COUNT(*) DESC, flow, step, error LIMIT %d", limit)), args...)
	if err != nil {
		return nil, fmt.Errorf("dead letter groups: %w", err)
	}
	defer rows.Close()
	var out []DeadLetterGroup
	for rows.Next() {
		var g DeadLetterGroup
		var first, last int64
		if err := rows.Scan(&g.Flow, &g.Step, &g.Error, &g.Count, &first, &last); err != nil {
			return nil, err
		}
		g.First, g.Last = time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
		out = append(out, g)
	}
	return out, rows.Err()
}
