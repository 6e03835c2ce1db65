// Package state is Sluice's state database: the completion ledger, the
// run ledger, which records every invocation of every flow, dead letters,
// usage, and the index of bucket objects already turned into events. It
// lives in a SQLite file (one process, the default) or in PostgreSQL,
// shared by every process of a deployment (OpenURL).
package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/dbident"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/sqlitedb"
	"github.com/sluicehq/sluice/nodes"
)

// Run statuses.
const (
	StatusSucceeded    = "succeeded"
	StatusFailed       = "failed"        // not dead-lettered: will be redelivered
	StatusDeadLettered = "dead_lettered" // failed for good, sent to the dead-letter topic
	StatusDuplicate    = "duplicate"     // a redelivered input already completed: acked, not re-run
	StatusAccepted     = "accepted"      // an async HTTP request queued, not finished yet
)

// Run is one invocation of a flow.
type Run struct {
	ID       string        `json:"id"`
	Flow     string        `json:"flow"`
	Trigger  string        `json:"trigger"` // "topic:orders", "bucket:uploads"
	Input    string        `json:"input"`   // message id, or bucket/key@etag
	Attempts int           `json:"attempts"`
	Status   string        `json:"status"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Step     string        `json:"step,omitempty"` // the failing step
	Error    string        `json:"error,omitempty"`
	Steps    []StepRun     `json:"steps,omitempty"`
	BytesIn  int64         `json:"bytes_in"`  // message and object bytes read
	BytesOut int64         `json:"bytes_out"` // bytes published and written to buckets
	// HTTPStatus is the status code an HTTP-triggered run answered.
	HTTPStatus int `json:"http_status,omitempty"`
	// Response keeps an async HTTP run's answer for GET /runs/{id}/result
	// (written with the record, read with RunResponse).
	Response     []byte `json:"-"`
	ResponseType string `json:"-"`
	// TraceID is the run's OpenTelemetry trace (32 hex digits), when it
	// was traced or its input carried a W3C traceparent.
	TraceID string `json:"trace_id,omitempty"`
	// Parent is the run that made the run's input (lineage): the
	// sluice_run of the message or object it consumed.
	Parent string `json:"parent_run,omitempty"`
	// NoRecord asks for no run record (a flow with `record: failures`
	// that succeeded): Record drops the run, and CompleteAll keeps only
	// its input's completion, a small row in the completions table.
	NoRecord bool `json:"-"`
}

// StepRun is one step of a run.
type StepRun struct {
	ID       string        `json:"id"`
	Node     string        `json:"node"`
	Status   string        `json:"status"` // succeeded, failed, skipped
	Attempts int           `json:"attempts"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
	// Output says what the step wrote, where a node reports it (the
	// object an archive batch became).
	Output string `json:"output,omitempty"`
	// Wrote lists the objects (bucket/key) the step wrote.
	Wrote []string `json:"wrote,omitempty"`
	// Published lists the topic of each message the step emitted, in
	// order: published once the run succeeded (a failed run publishes
	// none).
	Published []string `json:"published,omitempty"`
	// Calls are the metered calls the step made (functions, models),
	// over all its attempts.
	Calls []nodes.Call `json:"calls,omitempty"`
	// Log is diagnostic text the step's node kept on its last attempt
	// (a function's stderr tail).
	Log string `json:"log,omitempty"`
}

// DB is the state database. Run records are written in batches by a
// background writer (one transaction per batch) so recording costs the
// message path no commit; Close and Flush wait until they are written.
type DB struct {
	db  *sql.DB
	dia *dialect
	// Prepared once: statement preparation costs as much as the insert.
	// PostgreSQL's completions table (SQLite's ledger is sqliteLedger).
	insertDone, lookupDone *sql.Stmt
	runIns                 runInserts    // the SQLite run writer's statements
	ledger                 *sqliteLedger // the SQLite ledger's batch statements
	// insertAccepted records an accepted request unless its run finished
	// already (perhaps in another process).
	insertAccepted *sql.Stmt
	runs           chan pending
	// writeMu serialises this process's write transactions on a SQLite
	// file: waiting on it is cheap, where SQLite's busy handler sleeps in
	// milliseconds when a second writer finds the file locked. PostgreSQL
	// takes concurrent writers itself (see lockWrites).
	writeMu sync.Mutex
	// Completions waiting to be committed, and whether a caller is
	// committing (see Complete).
	commitMu   sync.Mutex
	waiting    []completion
	committing bool
	// flushReq carries a channel closed once everything queued is written.
	flushReq chan chan struct{}
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
	errMu    sync.Mutex
	err      error // the run writer's last error
	doneErr  error // the last completion commit's error
}

// Open opens (creating) the SQLite state database at path.
func Open(path string) (*DB, error) { return OpenTimeout(path, sqlitedb.DefaultBusyTimeout) }

// OpenTimeout is Open with another busy timeout: how long a write waits
// for another process's lock on the file before it fails (and the engine
// stops acking until a write succeeds).
func OpenTimeout(path string, busy time.Duration) (*DB, error) {
	db, err := sqlitedb.OpenTimeout(path, sqlitedb.SyncNormal, busy)
	if err != nil {
		return nil, err
	}
	if err := dbident.Check(context.Background(), db, path, "run history and index of objects already processed"); err != nil {
		db.Close()
		return nil, err
	}
	return open(context.Background(), db, sqliteDialect)
}

// open migrates the schema, prepares the statements and starts the run
// writer; it closes db on failure.
func open(ctx context.Context, db *sql.DB, dia *dialect) (*DB, error) {
	if err := schema.Apply(ctx, db, dia.postgres, "state", dia.migrations); err != nil {
		db.Close()
		return nil, err
	}
	d := &DB{db: db, dia: dia, runs: make(chan pending, 4096), flushReq: make(chan chan struct{}), done: make(chan struct{})}
	runCols := `(` + runColumnList + `) VALUES (` + runPlaceholders + `)`
	var err error
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&d.insertAccepted, `INSERT INTO runs ` + runCols + ` ON CONFLICT DO NOTHING`},
		{&d.insertDone, `INSERT INTO completions (flow, input, run_id, status, done_ms, recorded) VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING`},
		{&d.lookupDone, `SELECT run_id, status, done_ms FROM completions WHERE flow = ? AND input = ?`},
	} {
		if !dia.postgres && p.st != &d.insertAccepted {
			continue // SQLite keeps completions in the run records and its completions (sqliteLedger)
		}
		if *p.st, err = db.PrepareContext(ctx, dia.q(p.sql)); err != nil {
			db.Close()
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	if !dia.postgres {
		d.runIns.db = db
		if d.ledger, err = prepareSQLiteLedger(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	// On open, SQLite's advice for long-lived connections: every table
	// considered, statistics gathered where they are missing or stale.
	if err := d.optimize(ctx, "PRAGMA optimize=0x10002"); err != nil {
		db.Close()
		return nil, err
	}
	go d.writer()
	return d, nil
}

// pending is a run waiting for the writer.
type pending struct {
	run Run
}

// Record queues a run for writing. It blocks only when the writer is
// thousands of records behind.
func (d *DB) Record(r Run) {
	if !r.NoRecord {
		d.runs <- pending{run: r}
	}
}

// Flush waits until every run recorded so far is written.
func (d *DB) Flush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case d.flushReq <- ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return d.writeErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Err reports that the database cannot be written now: the last
// completion commit, or the last batch of run records, failed (disk full,
// locked by another process past the busy timeout). It is nil again once
// writes succeed; while a completion failure stands, the writer probes the
// file every tick, so callers may stop trying (and stop acking) meanwhile.
func (d *DB) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	if d.doneErr != nil {
		return d.doneErr
	}
	return d.err
}

func (d *DB) setDoneErr(err error) {
	d.errMu.Lock()
	d.doneErr = err
	d.errMu.Unlock()
}

// probe takes and releases the write lock, to learn whether the file is
// writable again after a failed completion commit.
func (d *DB) probe() {
	d.errMu.Lock()
	failed := d.doneErr != nil
	d.errMu.Unlock()
	if !failed {
		return
	}
	defer d.lockWrites()()
	tx, err := d.db.Begin() // SQLite: BEGIN IMMEDIATE, the write lock
	if err == nil {
		err = tx.Commit()
	}
	if err == nil {
		d.setDoneErr(nil)
	}
}

func (d *DB) writeErr() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

const batchSize = 512

func (d *DB) writer() {
	defer close(d.done)
	batch := make([]pending, 0, batchSize)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	write := func() {
		if len(batch) == 0 {
			return
		}
		err := d.insert(batch)
		d.errMu.Lock()
		d.err = err
		d.errMu.Unlock()
		if err == nil {
			batch = batch[:0]
		}
		// On error (disk full, database locked past the busy timeout) the
		// batch is kept and retried at the next tick; Err reports it, and
		// the engine stops acking until a write succeeds.
	}
	for {
		select {
		case r, ok := <-d.runs:
			if !ok {
				write()
				return
			}
			batch = append(batch, r)
			if len(batch) >= batchSize && d.writeErr() == nil {
				write()
			}
		case <-tick.C:
			write()
			d.probe()
		case ch := <-d.flushReq:
			// Take what is queued now, then answer.
			for n := len(d.runs); n > 0; n-- {
				batch = append(batch, <-d.runs)
			}
			write()
			close(ch)
		}
	}
}

// lockWrites takes writeMu on SQLite and returns its release.
func (d *DB) lockWrites() func() {
	if d.dia.postgres {
		return func() {}
	}
	d.writeMu.Lock()
	return d.writeMu.Unlock
}

func (d *DB) insert(runs []pending) error {
	if d.dia.postgres {
		return d.insertArrays(runs)
	}
	defer d.lockWrites()()
	tx, err := d.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rs := make([]*Run, len(runs))
	for i := range runs {
		rs[i] = &runs[i].run
	}
	if err := d.writeRuns(tx, rs); err != nil {
		return err
	}
	return tx.Commit()
}

// writeRuns writes run records in tx (SQLite, writeMu held), in order:
// consecutive runs of one kind (plain or not) in multi-row statements,
// accepted requests one by one (never over a record of the same run).
func (d *DB) writeRuns(tx *sql.Tx, runs []*Run) error {
	var (
		queue     []*Run
		plainKind bool
		args      []any
	)
	flush := func() (err error) {
		args, err = d.runIns.write(tx, queue, plainKind, args)
		queue = queue[:0]
		return err
	}
	var accepted *sql.Stmt
	for _, r := range runs {
		if r.Status == StatusAccepted {
			if err := flush(); err != nil {
				return err
			}
			if accepted == nil {
				accepted = tx.Stmt(d.insertAccepted)
			}
			if _, err := accepted.Exec(appendRunArgs(args[:0], r, false)...); err != nil {
				return err
			}
			continue
		}
		if p := plain(r); p != plainKind {
			if err := flush(); err != nil {
				return err
			}
			plainKind = p
		}
		queue = append(queue, r)
	}
	return flush()
}

// Filter selects runs; zero fields match everything.
type Filter struct {
	ID      string
	Flow    string
	Status  string
	Input   string
	Parent  string // runs whose parent run is this one (lineage)
	TraceID string
	Since   time.Time
	Limit   int       // 100 by default
	Until   time.Time // runs started before it
	Error   string    // runs whose error contains this text
}

// runsQuery is Runs' query and its arguments.
func (d *DB) runsQuery(f Filter) (string, []any) {
	var w where
	w.eq("id", f.ID)
	w.eq("flow", f.Flow)
	w.eq("status", f.Status)
	w.eq("input", f.Input)
	// The "<> ''" terms name the partial indexes' condition, so the
	// planners use them (lineageColumns).
	if f.Parent != "" {
		w.add("parent_run = ? AND parent_run <> ''", f.Parent)
	}
	if f.TraceID != "" {
		w.add("trace_id = ? AND trace_id <> ''", f.TraceID)
	}
	if !f.Since.IsZero() {
		w.add("started_ms >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		w.add("started_ms < ?", f.Until.UnixMilli())
	}
	if f.Error != "" {
		w.add(d.dia.contains("error"), f.Error)
	}
	q := `SELECT id, flow, trigger, input, attempts, status, started_ms, duration_us, step, error, steps, bytes_in, bytes_out, http_status, trace_id, parent_run FROM runs` + w.sql()
	args := w.args
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += fmt.Sprintf(" ORDER BY started_ms DESC, id DESC LIMIT %d", limit)
	return d.dia.q(q), args
}

// Runs returns matching runs, newest first.
func (d *DB) Runs(ctx context.Context, f Filter) ([]Run, error) {
	q, args := d.runsQuery(f)
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var r Run
		var started, dur int64
		var steps string
		if err := rows.Scan(&r.ID, &r.Flow, &r.Trigger, &r.Input, &r.Attempts, &r.Status, &started, &dur, &r.Step, &r.Error, &steps, &r.BytesIn, &r.BytesOut, &r.HTTPStatus, &r.TraceID, &r.Parent); err != nil {
			return nil, err
		}
		r.Started = time.UnixMilli(started).UTC()
		r.Duration = time.Duration(dur) * time.Microsecond
		_ = json.Unmarshal([]byte(steps), &r.Steps)
		out = append(out, r)
	}
	return out, rows.Err()
}

// MarkSeen records that an object version has been turned into an event;
// it reports false when it already was (the event is a repeat).
func (d *DB) MarkSeen(ctx context.Context, bucket, key, etag string) (bool, error) {
	res, err := d.db.ExecContext(ctx, d.dia.q(`INSERT INTO seen_objects (bucket, key, etag, seen_ms) VALUES (?,?,?,?) ON CONFLICT DO NOTHING`),
		bucket, key, etag, time.Now().UnixMilli())
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Close writes what is queued and closes the database.
func (d *DB) Close() error {
	d.closeMu.Lock()
	if d.closed {
		d.closeMu.Unlock()
		return nil
	}
	d.closed = true
	d.closeMu.Unlock()
	close(d.runs)
	<-d.done
	return errors.Join(d.writeErr(), d.db.Close())
}

// removedMark prefixes the etag column of the rows Forget leaves behind:
// one per removal of a key (no real etag starts with it).
const removedMark = "~removed:"

// Forget records that key was removed from bucket: the versions seen
// before are forgotten, so the same version created again is a new event,
// and the key's generation (see Generation) goes up by one.
func (d *DB) Forget(ctx context.Context, bucket, key string) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, d.dia.q(`DELETE FROM seen_objects WHERE bucket = ? AND key = ? AND etag NOT LIKE ?`),
		bucket, key, removedMark+"%"); err != nil {
		return err
	}
	now := time.Now()
	if _, err := tx.ExecContext(ctx, d.dia.q(`INSERT INTO seen_objects (bucket, key, etag, seen_ms) VALUES (?,?,?,?) ON CONFLICT DO NOTHING`),
		bucket, key, removedMark+strconv.FormatInt(now.UnixNano(), 10), now.UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// Generation is how many removals of key Forget recorded.
func (d *DB) Generation(ctx context.Context, bucket, key string) (int, error) {
	var n int
	err := d.db.QueryRowContext(ctx, d.dia.q(`SELECT COUNT(*) FROM seen_objects WHERE bucket = ? AND key = ? AND etag LIKE ?`),
		bucket, key, removedMark+"%").Scan(&n)
	return n, err
}

// Seen reports whether an object version was already turned into an event.
func (d *DB) Seen(ctx context.Context, bucket, key, etag string) (bool, error) {
	var n int
	err := d.db.QueryRowContext(ctx, d.dia.q(`SELECT COUNT(*) FROM seen_objects WHERE bucket = ? AND key = ? AND etag = ?`), bucket, key, etag).Scan(&n)
	return n > 0, err
}

// RunResponse returns the answer an async HTTP run stored: its status
// code, content type and body. ok is false for an unknown run or one
// without a stored answer.
func (d *DB) RunResponse(ctx context.Context, id string) (status int, ctype string, body []byte, ok bool, err error) {
	err = d.db.QueryRowContext(ctx, d.dia.q(`SELECT http_status, response_type, response FROM runs WHERE id = ? AND response IS NOT NULL`), id).
		Scan(&status, &ctype, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil, false, nil
	}
	return status, ctype, body, err == nil, err
}

// pgInsertRuns writes a batch of run records in one statement on
// PostgreSQL, one array per column: one round trip for the batch.
const pgInsertRuns = `INSERT INTO runs (id, flow, trigger, input, attempts, status, started_ms, duration_us, step, error, steps,
	bytes_in, bytes_out, http_status, response, response_type, trace_id, parent_run)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::bigint[], $8::bigint[],
		$9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::int[], $15::bytea[], $16::text[],
		$17::text[], $18::text[])`

// runColumns holds a batch of runs column by column.
type runColumns struct {
	id, flow, trigger, input, status, step, errs, steps, rtype []string
	traceID, parent                                            []string
	attempts, httpStatus                                       []int32
	started, dur, bytesIn, bytesOut                            []int64
	response                                                   [][]byte
}

func (c *runColumns) add(r Run) {
	steps := appendSteps(nil, r.Steps)
	c.id, c.flow, c.trigger, c.input = append(c.id, r.ID), append(c.flow, r.Flow), append(c.trigger, r.Trigger), append(c.input, r.Input)
	c.attempts, c.status = append(c.attempts, int32(r.Attempts)), append(c.status, r.Status)
	c.started, c.dur = append(c.started, r.Started.UnixMilli()), append(c.dur, r.Duration.Microseconds())
	c.step, c.errs, c.steps = append(c.step, r.Step), append(c.errs, r.Error), append(c.steps, string(steps))
	c.bytesIn, c.bytesOut, c.httpStatus = append(c.bytesIn, r.BytesIn), append(c.bytesOut, r.BytesOut), append(c.httpStatus, int32(r.HTTPStatus))
	c.response, c.rtype = append(c.response, r.Response), append(c.rtype, r.ResponseType)
	c.traceID, c.parent = append(c.traceID, r.TraceID), append(c.parent, r.Parent)
}

func (c *runColumns) args() []any {
	return []any{c.id, c.flow, c.trigger, c.input, c.attempts, c.status, c.started, c.dur, c.step, c.errs, c.steps,
		c.bytesIn, c.bytesOut, c.httpStatus, c.response, c.rtype, c.traceID, c.parent}
}

// insertArrays is insert on PostgreSQL. Within a batch the last record of
// a run wins; an accepted record is written only when none other of its
// run is (in the batch or already stored).
func (d *DB) insertArrays(runs []pending) error {
	last := map[string]Run{}
	var order []string
	accepted := map[string]Run{}
	for _, p := range runs {
		r := p.run
		if r.Status == StatusAccepted {
			accepted[r.ID] = r
			continue
		}
		if _, ok := last[r.ID]; !ok {
			order = append(order, r.ID)
		}
		last[r.ID] = r
	}
	// In id order, as RecoverRuns inserts: writers meeting on the same
	// rows take their locks in one order and cannot deadlock.
	slices.Sort(order)
	var final, acc runColumns
	for _, id := range order {
		final.add(last[id])
	}
	for _, id := range slices.Sorted(maps.Keys(accepted)) {
		if _, ok := last[id]; !ok {
			acc.add(accepted[id])
		}
	}
	tx, err := d.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if len(final.id) > 0 {
		if _, err := tx.Exec(pgInsertRuns+runUpsert, final.args()...); err != nil {
			return err
		}
	}
	if len(acc.id) > 0 {
		if _, err := tx.Exec(pgInsertRuns+` ON CONFLICT DO NOTHING`, acc.args()...); err != nil {
			return err
		}
	}
	return tx.Commit()
}
