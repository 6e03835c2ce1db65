package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DeadLetter is an input a flow gave up on, as sent to its dead-letter
// topic, kept here so it can be listed and replayed.
type DeadLetter struct {
	ID          string            `json:"id"` // the dead-letter message's id
	Flow        string            `json:"flow"`
	Step        string            `json:"step,omitempty"`
	Node        string            `json:"node,omitempty"`
	Error       string            `json:"error"`
	Attempts    int               `json:"attempts"`
	Failed      time.Time         `json:"failed"`
	SourceTopic string            `json:"source_topic"`
	SourceID    string            `json:"source_id"`
	Topic       string            `json:"topic"` // the dead-letter topic
	Payload     []byte            `json:"payload"`
	Metadata    map[string]string `json:"metadata"`
	Replayed    *time.Time        `json:"replayed,omitempty"`
	ReplayID    string            `json:"replay_id,omitempty"`
}

// RecordDeadLetter stores a dead letter (again: the same id is replaced).
func (d *DB) RecordDeadLetter(ctx context.Context, dl DeadLetter) error {
	meta, err := json.Marshal(dl.Metadata)
	if err != nil {
		return err
	}
	_, err = d.db.ExecContext(ctx, d.dia.q(`INSERT INTO dead_letters
		(id, flow, step, node, error, attempts, failed_ms, source_topic, source_id, topic, payload, metadata)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (id) DO UPDATE SET flow = excluded.flow, step = excluded.step, node = excluded.node, error = excluded.error,
		attempts = excluded.attempts, failed_ms = excluded.failed_ms, source_topic = excluded.source_topic,
		source_id = excluded.source_id, topic = excluded.topic, payload = excluded.payload, metadata = excluded.metadata,
		replayed_ms = NULL, replay_id = ''`),
		dl.ID, dl.Flow, dl.Step, dl.Node, dl.Error, dl.Attempts, dl.Failed.UnixMilli(), dl.SourceTopic, dl.SourceID, dl.Topic, dl.Payload, string(meta))
	return err
}

// DeadLetterFilter selects dead letters; zero fields match everything.
type DeadLetterFilter struct {
	IDs      []string
	Flow     string
	Step     string
	Error    string // substring of the error
	Since    time.Time
	Replayed bool   // include those already replayed
	Limit    int    // 1000 by default
	SourceID string // only the dead letter of this input message
	ReplayID string // only the dead letter replayed as this message
}

func (f DeadLetterFilter) where(dia *dialect) (string, []any) {
	var w where
	if len(f.IDs) > 0 {
		ids := make([]any, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = id
		}
		w.add("id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+")", ids...)
	}
	w.eq("flow", f.Flow)
	w.eq("step", f.Step)
	w.eq("source_id", f.SourceID)
	w.eq("replay_id", f.ReplayID)
	if f.Error != "" {
		w.add(dia.contains("error"), f.Error)
	}
	if !f.Since.IsZero() {
		w.add("failed_ms >= ?", f.Since.UnixMilli())
	}
	if !f.Replayed {
		w.add("replayed_ms IS NULL")
	}
	return w.sql(), w.args
}

// DeadLetters returns matching dead letters, oldest first.
func (d *DB) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	w, args := f.where(d.dia)
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	rows, err := d.db.QueryContext(ctx, d.dia.q(`SELECT id, flow, step, node, error, attempts, failed_ms, source_topic, source_id, topic,
		payload, metadata, replayed_ms, replay_id FROM dead_letters`+w+fmt.Sprintf(" ORDER BY failed_ms, id LIMIT %d", limit)), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var dl DeadLetter
		var failed int64
		var replayed sql.NullInt64
		var meta string
		if err := rows.Scan(&dl.ID, &dl.Flow, &dl.Step, &dl.Node, &dl.Error, &dl.Attempts, &failed, &dl.SourceTopic, &dl.SourceID,
			&dl.Topic, &dl.Payload, &meta, &replayed, &dl.ReplayID); err != nil {
			return nil, err
		}
		dl.Failed = time.UnixMilli(failed).UTC()
		if replayed.Valid {
			t := time.UnixMilli(replayed.Int64).UTC()
			dl.Replayed = &t
		}
		_ = json.Unmarshal([]byte(meta), &dl.Metadata)
		out = append(out, dl)
	}
	return out, rows.Err()
}

// MarkReplayed records that a dead letter was published again as replayID.
func (d *DB) MarkReplayed(ctx context.Context, id, replayID string) error {
	_, err := d.db.ExecContext(ctx, d.dia.q(`UPDATE dead_letters SET replayed_ms = ?, replay_id = ? WHERE id = ?`), time.Now().UnixMilli(), replayID, id)
	return err
}

// PurgeDeadLetters deletes matching dead letters and returns how many.
func (d *DB) PurgeDeadLetters(ctx context.Context, f DeadLetterFilter) (int64, error) {
	w, args := f.where(d.dia)
	res, err := d.db.ExecContext(ctx, d.dia.q(`DELETE FROM dead_letters`+w), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
