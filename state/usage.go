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
	q := `SELECT r.flow, ` + d.dia.day("r.started_ms") + ` AS day,
		json_extract(c.value, '$.kind') AS kind, json_extract(c.value, '$.name') AS name,
		COUNT(*), SUM(COALESCE(json_extract(c.value, '$.error'), '') != ''),
		SUM(COALESCE(json_extract(c.value, '$.cold_start'), 0)),
		SUM(COALESCE(json_extract(c.value, '$.duration_ns'), 0)) / 1e9,
		SUM(COALESCE(json_extract(c.value, '$.bytes_in'), 0))
		FROM runs r, json_each(r.steps) s, json_each(json_extract(s.value, '$.calls')) c` + w.sql() +
		` GROUP BY r.flow, day, kind, name ORDER BY day, r.flow, kind, name`
	if d.dia.postgres {
		q = `SELECT r.flow, ` + d.dia.day("r.started_ms") + ` AS day, c->>'kind' AS kind, c->>'name' AS name,
		COUNT(*), SUM(CASE WHEN COALESCE(c->>'error', '') <> '' THEN 1 ELSE 0 END),
		SUM(CASE WHEN (c->>'cold_start')::boolean THEN 1 ELSE 0 END),
		SUM(COALESCE((c->>'duration_ns')::bigint, 0)) / 1e9,
		SUM(COALESCE((c->>'bytes_in')::bigint, 0))
		FROM runs r, jsonb_array_elements(r.steps::jsonb) s, jsonb_array_elements(COALESCE(s->'calls', '[]'::jsonb)) c` + w.sql() +
			` GROUP BY r.flow, day, kind, name ORDER BY day, r.flow, kind, name`
	}
	rows, err := d.db.QueryContext(ctx, d.dia.q(q), w.args...)
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
