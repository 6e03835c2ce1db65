package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The completion ledger: one row per (flow, input) a flow finished, for
// good: succeeded, or dead-lettered. It is what makes redelivery harmless:
// an input whose completion is committed is acked without running again.
const completionSchema = `
CREATE TABLE IF NOT EXISTS completions (
	flow    TEXT NOT NULL,
	input   TEXT NOT NULL,
	run_id  TEXT NOT NULL,
	status  TEXT NOT NULL,
	done_ms INTEGER NOT NULL,
	PRIMARY KEY (flow, input)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS completions_done ON completions(done_ms);`

// Completion is the ledger's entry for an input a flow finished.
type Completion struct {
	Flow, Input string
	Run         string // the run that completed it
	Status      string // succeeded or dead_lettered
	At          time.Time
}

// Complete queues r for writing and marks its input completed, in the
// same transaction (written in batches, like Record). If another run
// completed the input first (a redelivery that raced the first run's
// write), r is recorded as a duplicate instead: the ledger never holds two
// completions of one input.
func (d *DB) Complete(r Run) {
	k := [2]string{r.Flow, r.Input}
	d.queuedMu.Lock()
	if _, ok := d.queued[k]; !ok {
		d.queued[k] = Completion{Flow: r.Flow, Input: r.Input, Run: r.ID, Status: r.Status, At: r.Started.Add(r.Duration).UTC()}
	}
	d.queuedMu.Unlock()
	d.runs <- pending{run: r, complete: true}
}

// Completed looks an input up in the ledger, completions queued for
// writing included.
func (d *DB) Completed(ctx context.Context, flow, input string) (Completion, bool, error) {
	d.queuedMu.Lock()
	q, ok := d.queued[[2]string{flow, input}]
	d.queuedMu.Unlock()
	if ok {
		return q, true, nil
	}
	c := Completion{Flow: flow, Input: input}
	var ms int64
	err := d.lookupDone.QueryRowContext(ctx, flow, input).Scan(&c.Run, &c.Status, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("completion ledger: %w", err)
	}
	c.At = time.UnixMilli(ms).UTC()
	return c, true, nil
}

// Prune deletes runs and completions older than before, and returns how
// many rows went. Inputs whose completion is pruned would run again if
// redelivered: keep more than the brokers' redelivery horizon.
func (d *DB) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM runs WHERE started_ms < ?`,
		`DELETE FROM completions WHERE done_ms < ?`,
	} {
		res, err := d.db.ExecContext(ctx, q, before.UnixMilli())
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

// Retain prunes runs and completions older than keep now and then every
// interval until ctx ends, reporting each pass to report (which may be
// nil).
func (d *DB) Retain(ctx context.Context, keep, interval time.Duration, report func(deleted int64, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := d.Prune(ctx, time.Now().Add(-keep))
		if report != nil && ctx.Err() == nil {
			report(n, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
