package state

import (
	"context"
	"fmt"
	"time"
)

// Usage sums one flow's invocations over one UTC day, the way a
// serverless bill does: calls, errors, compute time, bytes.
type Usage struct {
	Flow           string  `json:"flow"`
	Day            string  `json:"day"`   // 2026-11-25
	Calls          int64   `json:"calls"` // runs, duplicates and filtered inputs excluded
	Errors         int64   `json:"errors"`
	Duplicates     int64   `json:"duplicates"`
	ComputeSeconds float64 `json:"compute_seconds"`
	BytesIn        int64   `json:"bytes_in"`
	BytesOut       int64   `json:"bytes_out"`
}

// UsageFilter selects what Usage sums; zero fields match everything.
type UsageFilter struct {
	Flow  string
	Since time.Time
}

// Usage sums the run ledger per flow and per day, oldest day first.
func (d *DB) Usage(ctx context.Context, f UsageFilter) ([]Usage, error) {
	var w where
	w.eq("flow", f.Flow)
	if !f.Since.IsZero() {
		w.add("started_ms >= ?", f.Since.UnixMilli())
	}
	q := `SELECT flow, ` + d.dia.day("started_ms") + ` AS day,
		CAST(SUM(CASE WHEN status != 'duplicate' THEN 1 ELSE 0 END) AS BIGINT),
		CAST(SUM(CASE WHEN status IN ('failed', 'dead_lettered') THEN 1 ELSE 0 END) AS BIGINT),
		CAST(SUM(CASE WHEN status = 'duplicate' THEN 1 ELSE 0 END) AS BIGINT),
		CAST(SUM(CASE WHEN status != 'duplicate' THEN duration_us ELSE 0 END) AS DOUBLE PRECISION) / 1e6,
		CAST(SUM(bytes_in) AS BIGINT), CAST(SUM(bytes_out) AS BIGINT)
		FROM runs` + w.sql()
	q += " GROUP BY flow, day ORDER BY day, flow"
	rows, err := d.db.QueryContext(ctx, d.dia.q(q), w.args...)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	defer rows.Close()
	var out []Usage
	for rows.Next() {
		var u Usage
		if err := rows.Scan(&u.Flow, &u.Day, &u.Calls, &u.Errors, &u.Duplicates, &u.ComputeSeconds, &u.BytesIn, &u.BytesOut); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
