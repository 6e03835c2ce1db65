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
	q := `SELECT flow, strftime('%Y-%m-%d', started_ms / 1000, 'unixepoch') AS day,
		SUM(status != 'duplicate'), SUM(status IN ('failed', 'dead_lettered')), SUM(status = 'duplicate'),
		SUM(CASE WHEN status != 'duplicate' THEN duration_us ELSE 0 END) / 1e6, SUM(bytes_in), SUM(bytes_out)
		FROM runs` + w.sql()
	q += " GROUP BY flow, day ORDER BY day, flow"
	rows, err := d.db.QueryContext(ctx, q, w.args...)
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

// CallUsage sums one kind of metered call (functions, models) of one
// flow over one UTC day: what a per-call bill shows.
type CallUsage struct {
	Flow       string  `json:"flow"`
	Day        string  `json:"day"`
	Kind       string  `json:"kind"` // "function", "model"
	Name       string  `json:"name"`
	Calls      int64   `json:"calls"`
	Errors     int64   `json:"errors"`
	ColdStarts int64   `json:"cold_starts"`
	Seconds    float64 `json:"seconds"` // time in the calls: compute or inference
	BytesIn    int64   `json:"bytes_in"`
}

// CallUsage sums the metered calls the runs' steps recorded, per flow,
// day, kind and name, oldest day first.
func (d *DB) CallUsage(ctx context.Context, f UsageFilter) ([]CallUsage, error) {
	var w where
	w.eq("r.flow", f.Flow)
	if !f.Since.IsZero() {
		w.add("r.started_ms >= ?", f.Since.UnixMilli())
	}
	w.add("r.status != 'duplicate'")
	q := `SELECT r.flow, strftime('%Y-%m-%d', r.started_ms / 1000, 'unixepoch') AS day,
		json_extract(c.value, '$.kind') AS kind, json_extract(c.value, '$.name') AS name,
		COUNT(*), SUM(COALESCE(json_extract(c.value, '$.error'), '') != ''),
		SUM(COALESCE(json_extract(c.value, '$.cold_start'), 0)),
		SUM(COALESCE(json_extract(c.value, '$.duration_ns'), 0)) / 1e9,
		SUM(COALESCE(json_extract(c.value, '$.bytes_in'), 0))
		FROM runs r, json_each(r.steps) s, json_each(json_extract(s.value, '$.calls')) c` + w.sql() +
		` GROUP BY r.flow, day, kind, name ORDER BY day, r.flow, kind, name`
	rows, err := d.db.QueryContext(ctx, q, w.args...)
	if err != nil {
		return nil, fmt.Errorf("call usage: %w", err)
	}
	defer rows.Close()
	var out []CallUsage
	for rows.Next() {
		var u CallUsage
		if err := rows.Scan(&u.Flow, &u.Day, &u.Kind, &u.Name, &u.Calls, &u.Errors, &u.ColdStarts, &u.Seconds, &u.BytesIn); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
