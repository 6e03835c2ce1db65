package state

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// The completion ledger: one entry per (flow, input) a flow finished, for
// good: succeeded, or dead-lettered. It is what makes redelivery harmless:
// an input whose completion is committed is acked without running again.
// On SQLite the entries are the run records themselves (a succeeded or
// dead-lettered run completed its input), written in the transaction that
// completes the input: one row per input. On PostgreSQL they are rows of
// their own (completions), which every process shares: a redelivery to
// another process (a rebalance, a crash) finds the completion there; the
// run records follow in batches.

// Completion is the ledger's entry for an input a flow finished.
type Completion struct {
	Flow, Input string
	Run         string // the run that completed it
	Status      string // succeeded or dead_lettered
	At          time.Time
}

// completion is a run waiting for its input's completion to be committed.
type completion struct {
	run *Run // the caller's, which waits until the commit is done
	// done is answered once committed: set on the last completion of a
	// CompleteAll call (a call's completions are always in one batch).
	done chan error
	dup  *bool // set by the commit: the input was completed already
}

// Complete marks r's input completed, durably, then queues r for the run
// ledger, and returns once the completion is committed: call it before
// acking the input. Runs completing together share one commit. dup
// reports that another run had completed the input already (a redelivery
// that raced the first run); r is then recorded as a duplicate.
//
// On SQLite the run record is the completion, written before returning.
// On PostgreSQL only the small completion row is; the run record follows
// in a batch, and if the process dies in between, RecoverRuns recreates
// it from the completion (its steps are lost).
//
// A run with NoRecord gets no record on either: only its completion.
func (d *DB) Complete(ctx context.Context, r Run) (dup bool, err error) {
	dups, err := d.CompleteAll(ctx, []Run{r})
	if err != nil {
		return false, err
	}
	return dups[0], nil
}

// CompleteAll is Complete for several runs: their completions are
// committed together (with whatever other completions queue meanwhile),
// then the runs are queued for the run ledger. dups[i] reports whether
// runs[i]'s input had been completed already.
func (d *DB) CompleteAll(ctx context.Context, runs []Run) (dups []bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		return nil, nil
	}
	dups = make([]bool, len(runs))
	done := make(chan error, 1)
	d.commitMu.Lock()
	for i := range runs {
		c := completion{run: &runs[i], dup: &dups[i]}
		if i == len(runs)-1 {
			c.done = done
		}
		d.waiting = append(d.waiting, c)
	}
	if !d.committing {
		// No commit under way: commit here, without a hand-off to
		// another goroutine, and keep committing what queues up.
		d.committing = true
		for len(d.waiting) > 0 {
			batch := d.waiting
			d.waiting = nil
			d.commitMu.Unlock()
			cerr := d.commitCompletions(batch)
			d.setDoneErr(cerr)
			for _, b := range batch {
				if b.done != nil {
					b.done <- cerr
				}
			}
			d.commitMu.Lock()
		}
		d.committing = false
	}
	// Otherwise a commit is under way: its caller commits ours next, with
	// whoever else arrives meanwhile (group commit).
	d.commitMu.Unlock()
	if err = <-done; err != nil {
		return nil, fmt.Errorf("record completion of %s: %w", runs[0].Input, err)
	}
	if !d.dia.postgres {
		return dups, nil // the records are written (sqliteLedger.commit)
	}
	for i, r := range runs {
		if dups[i] {
			markDuplicate(&r)
		}
		d.Record(r)
	}
	return dups, nil
}

// markDuplicate makes r the record of a run whose input another run
// completed first. The record keeps its own id: it never replaces the
// record of the run that completed the input.
func markDuplicate(r *Run) {
	r.Status, r.Error = StatusDuplicate, "input completed by another run"
}

func (d *DB) commitCompletions(batch []completion) error {
	if d.dia.postgres && len(batch) > 1 {
		return d.commitCompletionsArrays(batch)
	}
	if d.dia.postgres {
		// One statement commits by itself: no BEGIN and COMMIT round trips.
		return d.insertCompletion(d.insertDone, batch[0])
	}
	defer d.lockWrites()()
	tx, err := d.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := d.commitSQLite(tx, batch); err != nil {
		return err
	}
	return tx.Commit()
}

// commitCompletionsArrays commits a batch on PostgreSQL in one statement
// (column arrays through unnest), the inputs in a fixed order: two
// processes committing overlapping batches then take the rows' locks in
// the same order and never deadlock. Inputs it did not insert (RETURNING)
// were completed already.
func (d *DB) commitCompletionsArrays(batch []completion) error {
	sorted := slices.Clone(batch)
	slices.SortStableFunc(sorted, func(a, b completion) int {
		return cmp.Or(cmp.Compare(a.run.Flow, b.run.Flow), cmp.Compare(a.run.Input, b.run.Input))
	})
	type fi struct{ flow, input string }
	var flows, inputs, runs, statuses []string
	var done []int64
	var recorded []bool
	first := map[fi]bool{}
	for _, c := range sorted {
		k := fi{c.run.Flow, c.run.Input}
		if first[k] {
			continue // a second completion in the batch: a duplicate (below)
		}
		first[k] = true
		flows, inputs, runs = append(flows, k.flow), append(inputs, k.input), append(runs, c.run.ID)
		statuses, done = append(statuses, c.run.Status), append(done, c.run.Started.Add(c.run.Duration).UnixMilli())
		recorded = append(recorded, !c.run.NoRecord)
	}
	rows, err := d.db.Query(`INSERT INTO completions (flow, input, run_id, status, done_ms, recorded)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::boolean[])
		ON CONFLICT DO NOTHING RETURNING flow, input, run_id`, flows, inputs, runs, statuses, done, recorded)
	if err != nil {
		return err
	}
	defer rows.Close()
	won := map[fi]string{} // inserted: the run that completed it
	for rows.Next() {
		var k fi
		var run string
		if err := rows.Scan(&k.flow, &k.input, &run); err != nil {
			return err
		}
		won[k] = run
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range batch {
		*c.dup = won[fi{c.run.Flow, c.run.Input}] != c.run.ID
	}
	return nil
}

func (d *DB) insertCompletion(st *sql.Stmt, c completion) error {
	r := *c.run
	res, err := st.Exec(r.Flow, r.Input, r.ID, r.Status, r.Started.Add(r.Duration).UnixMilli(), !r.NoRecord)
	if err != nil {
		return err
	}
	n, _ := res.RowsAffected()
	*c.dup = n == 0
	return nil
}

// RecoverRuns recreates the run records a crash lost after their inputs'
// completions were committed, and returns how many. Only the last moments
// before a crash can lack them, so completions newer than the latest run
// record (less a margin) are checked. Call it when starting to process,
// before any run: while another process is processing, its records still
// in flight would look lost.
//
// On SQLite, where the run record is the completion, there is nothing to
// recreate: it returns 0.
func (d *DB) RecoverRuns(ctx context.Context) (int64, error) {
	if !d.dia.postgres {
		return 0, nil
	}
	var latest sql.NullInt64
	if err := d.db.QueryRowContext(ctx, `SELECT MAX(started_ms) FROM runs`).Scan(&latest); err != nil {
		return 0, err
	}
	since := latest.Int64 - (10 * time.Minute).Milliseconds()
	defer d.lockWrites()()
	res, err := d.db.ExecContext(ctx, d.dia.q(`INSERT INTO runs (id, flow, trigger, input, attempts, status, started_ms, duration_us, error)
		SELECT c.run_id, c.flow, '', c.input, 1, c.status, c.done_ms, 0, 'run record lost in a crash; recreated from the completion ledger'
		FROM completions c WHERE c.done_ms >= ? AND c.recorded AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = c.run_id)
		ORDER BY c.run_id
		ON CONFLICT DO NOTHING`), since)
	if err != nil {
		return 0, fmt.Errorf("recover run records: %w", err)
	}
	return res.RowsAffected()
}

// Completed looks an input up in the ledger.
func (d *DB) Completed(ctx context.Context, flow, input string) (Completion, bool, error) {
	if !d.dia.postgres {
		done, err := d.ledger.lookupTx(ctx, nil, flow, []string{input})
		c, ok := done[input]
		return c, ok, err
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

// CompletedAll looks inputs of a flow up in the ledger at once and returns
// the completed ones by input.
func (d *DB) CompletedAll(ctx context.Context, flow string, inputs []string) (map[string]Completion, error) {
	if !d.dia.postgres {
		return d.ledger.lookupTx(ctx, nil, flow, inputs)
	}
	rows, err := d.db.QueryContext(ctx, `SELECT input, run_id, status, done_ms FROM completions WHERE flow = $1 AND input = ANY($2::text[])`, flow, inputs)
	return scanCompletions(rows, err, flow, len(inputs))
}

// scanCompletions reads the rows (input, run_id, status, done_ms) of a
// lookup of flow's inputs, whose query returned err, by input; it closes
// the rows.
func scanCompletions(rows *sql.Rows, err error, flow string, n int) (map[string]Completion, error) {
	if err != nil {
		return nil, fmt.Errorf("completion ledger: %w", err)
	}
	defer rows.Close()
	var out map[string]Completion // nil (no allocation) while nothing is completed
	for rows.Next() {
		if out == nil {
			out = make(map[string]Completion, n)
		}
		c := Completion{Flow: flow}
		var ms int64
		if err := rows.Scan(&c.Input, &c.Run, &c.Status, &ms); err != nil {
			return nil, fmt.Errorf("completion ledger: %w", err)
		}
		c.At = time.UnixMilli(ms).UTC()
		out[c.Input] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("completion ledger: %w", err)
	}
	return out, nil
}

// pruneChunk is how many rows one prune statement deletes: small
// transactions keep the writers' waits short.
const pruneChunk = 1000

// Prune deletes runs and completions older than before, in chunks of
// pruneChunk rows, and returns how many rows went. Inputs whose completion
// is pruned would run again if redelivered: keep more than the brokers'
// redelivery horizon. On PostgreSQL one process prunes at a time (an
// advisory lock); the others return 0 at once.
func (d *DB) Prune(ctx context.Context, before time.Time) (int64, error) {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	defer conn.Close()
	if d.dia.postgres {
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, pruneLockKey).Scan(&got); err != nil {
			return 0, fmt.Errorf("prune: lock: %w", err)
		}
		if !got {
			return 0, nil // another process is pruning
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, pruneLockKey)
	}
	var total int64
	queries := []string{
		`DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE started_ms < ? LIMIT ` + strconv.Itoa(pruneChunk) + `)`,
		`DELETE FROM completions WHERE (flow, input) IN (SELECT flow, input FROM completions WHERE done_ms < ? LIMIT ` + strconv.Itoa(pruneChunk) + `)`,
	}
	for _, q := range queries {
		for {
			n, err := d.pruneOnce(ctx, conn, d.dia.q(q), before.UnixMilli())
			total += n
			if err != nil {
				return total, fmt.Errorf("prune: %w", err)
			}
			if n < pruneChunk {
				break
			}
		}
	}
	return total, nil
}

// pruneLockKey is the advisory lock of the pruning process.
const pruneLockKey int64 = 0x736c756963650001

func (d *DB) pruneOnce(ctx context.Context, conn *sql.Conn, q string, before int64) (int64, error) {
	defer d.lockWrites()()
	res, err := conn.ExecContext(ctx, q, before)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Retain prunes runs and completions older than keep (none when keep is
// 0) now and then every interval until ctx ends, then refreshes the
// planner's statistics (Optimize), reporting each pass to report (which
// may be nil).
func (d *DB) Retain(ctx context.Context, keep, interval time.Duration, report func(deleted int64, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var n int64
		var err error
		if keep > 0 {
			n, err = d.Prune(ctx, time.Now().Add(-keep))
		}
		err = errors.Join(err, d.Optimize(ctx))
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

// Optimize refreshes SQLite's planner statistics where they are missing
// or stale (PRAGMA optimize: ANALYZE of the tables that gained or lost
// many rows, bounded in cost), so a query on runs by input, parent or
// trace takes that index rather than reading every run of the flow. On
// PostgreSQL, whose autovacuum keeps statistics, it does nothing. Open
// calls it; keep calling it now and then (Retain does, hourly).
func (d *DB) Optimize(ctx context.Context) error {
	return d.optimize(ctx, "PRAGMA optimize")
}

func (d *DB) optimize(ctx context.Context, pragma string) error {
	if d.dia.postgres {
		return nil
	}
	defer d.lockWrites()()
	if _, err := d.db.ExecContext(ctx, pragma); err != nil {
		return fmt.Errorf("state: optimize: %w", err)
	}
	return nil
}
