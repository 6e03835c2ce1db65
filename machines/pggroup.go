package machines

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit on PostgreSQL. Apply queues its transition; the caller
// that finds no commit under way commits what is queued, in one
// statement, and keeps committing what queues meanwhile (the state
// ledger's scheme, state/ledger.go). Concurrent transitions (the engine's
// lanes, one per partition key) thus share one round trip and one WAL
// flush, while a transition alone costs one light statement (pgApplyNew,
// pgApplyNext; a repeated input fails it, and it alone).
//
// The group's statement (pgApplyGroup) cannot fail for a single
// transition's sake: an entity whose version moved, a create whose entity exists and a
// repeated input each just leave that transition out of what it returns
// (each transition's outcome is its own); the rest apply. Should it fail
// all the same (a race with another process on the unique input index, a
// deadlock between processes), each transition of the group is retried
// alone, so one failure never fails the others.

// maxGroup bounds the transitions of one statement.
const maxGroup = 256

// pgApplyGroup applies a group of transitions, given column by column
// ($1–$9, one row per transition, i its index) with their timers
// (pgApplyGroupTimers, $10–$13, by transition index). A transition
// applies when its entity is at the expected version (a new one: absent)
// and its input caused no transition of the entity yet; the entity row, the transition row and its timers
// are written together. It returns the indexes of the transitions applied
// with the entity's version after each.
const pgApplyGroup = `WITH req AS (
	-- seen: the input caused a transition of the entity already. A scalar
	-- subquery is probed per transition through the unique input index;
	-- as NOT EXISTS the planner may hash the whole transitions table.
	SELECT r.*, (SELECT true FROM transitions t
			WHERE t.machine = r.machine AND t.key = r.key AND t.input = r.input AND t.input <> '') AS seen
	FROM unnest($1::int[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[])
		AS r(i, machine, key, expect, state_to, event, from_state, input, at_ms)
), upd AS (
	UPDATE entities e SET state = r.state_to, version = e.version + 1, updated_ms = r.at_ms
	FROM req r
	WHERE r.expect > 0 AND r.seen IS NULL AND e.machine = r.machine AND e.key = r.key AND e.version = r.expect
	RETURNING r.i, e.version
), ins AS (
	INSERT INTO entities (machine, key, state, version, updated_ms)
	SELECT machine, key, state_to, 1, at_ms FROM req WHERE expect = 0
	ON CONFLICT DO NOTHING
	RETURNING machine, key
), applied AS (
	SELECT i, version FROM upd
	UNION ALL
	SELECT r.i, 1::bigint FROM ins JOIN req r ON r.expect = 0 AND r.machine = ins.machine AND r.key = ins.key
), tr AS (
	INSERT INTO transitions (machine, key, version, event, from_state, to_state, input, at_ms)
	SELECT r.machine, r.key, a.version, r.event, r.from_state, r.state_to, r.input, r.at_ms
	FROM applied a JOIN req r ON r.i = a.i
)`

// pgApplyGroupTimers follows pgApplyGroup's CTEs for a group setting
// timers ($10–$13); a group setting none leaves it out (and the timers
// table unopened).
const pgApplyGroupTimers = `, tm AS (
	INSERT INTO timers (machine, key, version, event, state, topic, due_ms)
	SELECT r.machine, r.key, a.version, x.event, r.state_to, x.topic, x.due_ms
	FROM unnest($10::int[], $11::text[], $12::text[], $13::bigint[]) AS x(i, event, topic, due_ms)
		JOIN applied a ON a.i = x.i JOIN req r ON r.i = x.i
	ON CONFLICT DO NOTHING
)`

// pgApplyGroupEnd ends pgApplyGroup.
const pgApplyGroupEnd = `
SELECT i, version FROM applied`

// A transition alone (no timers) takes a lighter statement: the entity's
// row moves (or is created) only at the expected version, and the
// transition row follows from it; the unique input index fails the
// statement for a repeated input.
const (
	pgApplyNew = `WITH e AS (
		INSERT INTO entities (machine, key, state, version, updated_ms) VALUES ($1::text, $2::text, $3::text, 1, $4::bigint)
		ON CONFLICT DO NOTHING RETURNING version)
	INSERT INTO transitions (machine, key, version, event, from_state, to_state, input, at_ms)
	SELECT $1::text, $2::text, e.version, $5::text, $6::text, $3::text, $7::text, $4::bigint FROM e`
	pgApplyNext = `WITH e AS (
		UPDATE entities SET state = $3::text, version = version + 1, updated_ms = $4::bigint
		WHERE machine = $1::text AND key = $2::text AND version = $8::bigint RETURNING version)
	INSERT INTO transitions (machine, key, version, event, from_state, to_state, input, at_ms)
	SELECT $1::text, $2::text, e.version, $5::text, $6::text, $3::text, $7::text, $4::bigint FROM e`
)

// applyReq is one Apply waiting for its group's commit.
type applyReq struct {
	machine, key string
	expect       int64
	t            Transition
	atMS         int64
	applied      bool
	done         chan error // answered once its group committed (or failed)
}

// group queues transitions for the next commit.
type group struct {
	mu       sync.Mutex
	waiting  []*applyReq
	inFlight int // groups being committed
	// Tuning (zero: the defaults): groups committed at once (PostgreSQL
	// flushes the WAL of concurrent commits together, so a second group
	// can ride the first's flush), and transitions per group.
	maxInFlight, maxSize int
	noYield              bool
	// Committed so far: groups, and the transitions in them.
	groups, grouped atomic.Int64
}

// defaultInFlight is how many groups commit at once (see group): one,
// by measurement (BenchmarkPostgresApply: with 16 and 64 callers one
// group in flight gathered the most transitions per commit; a second
// group in flight split them).
const defaultInFlight = 1

// Apply queues the transition with whatever else is being applied and
// returns once its group is committed (see the group commit above): the
// entity row, the transition row and its timers are committed together,
// before Apply returns. A caller whose ctx ends while its transition is
// being committed gets ctx's error; the transition may then be committed
// or not, and a redelivered input is found by the unique input index.
func (s *Postgres) Apply(ctx context.Context, machine, key string, expect int64, t Transition) (Entity, bool, error) {
	if err := ctx.Err(); err != nil {
		return Entity{}, false, err
	}
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	r := &applyReq{machine: machine, key: key, expect: expect, t: t, atMS: at.UnixMilli(), done: make(chan error, 1)}
	s.mu.Lock()
	s.waiting = append(s.waiting, r)
	if s.inFlight < cmp.Or(s.maxInFlight, defaultInFlight) {
		// Room for a commit: commit here. The group runs without ctx's
		// cancellation: other callers' transitions ride in it.
		s.inFlight++
		s.commitQueued(context.WithoutCancel(ctx), r)
	}
	s.mu.Unlock()
	select {
	case err := <-r.done:
		if err != nil {
			return s.failed(ctx, machine, key, t.Input, err)
		}
	case <-ctx.Done():
		return Entity{}, false, ctx.Err()
	}
	if !r.applied {
		return s.repeatOr(ctx, machine, key, t.Input, ErrConflict)
	}
	return Entity{Machine: machine, Key: key, State: t.To, Version: expect + 1, Updated: time.UnixMilli(r.atMS).UTC()}, true, nil
}

// commitQueued commits groups while transitions are queued (s.mu held,
// s.inFlight counting this commit), until own (nil: none) is answered;
// what is still queued then is committed by a goroutine of its own, so
// that the caller does not wait on others' transitions.
func (s *Postgres) commitQueued(ctx context.Context, own *applyReq) {
	for len(s.waiting) > 0 {
		if own != nil && len(own.done) > 0 {
			go func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.commitQueued(ctx, nil)
			}()
			return
		}
		if !s.noYield {
			// Let callers that are ready to run queue their transitions
			// first (it costs nothing when none are).
			s.mu.Unlock()
			runtime.Gosched()
			s.mu.Lock()
		}
		g := s.take()
		s.mu.Unlock()
		s.commitGroup(ctx, g)
		s.mu.Lock()
	}
	s.inFlight--
}

// take removes the next group from the queue (s.mu held): at most
// maxGroup transitions, at most one per entity (a later one for the same
// entity waits for the next group, so it applies after the earlier one,
// as if they came one at a time).
func (s *Postgres) take() []*applyReq {
	type ek struct{ machine, key string }
	seen := map[ek]bool{}
	var g, rest []*applyReq
	for _, r := range s.waiting {
		k := ek{r.machine, r.key}
		if seen[k] || len(g) == cmp.Or(s.maxSize, maxGroup) {
			rest = append(rest, r)
			continue
		}
		seen[k] = true
		g = append(g, r)
	}
	s.waiting = rest
	return g
}

// commitGroup commits g and answers each of its transitions. When the
// group's statement fails, each transition is tried alone, so that only
// the one that fails is answered with the error.
func (s *Postgres) commitGroup(ctx context.Context, g []*applyReq) {
	s.groups.Add(1)
	s.grouped.Add(int64(len(g)))
	err := s.applyGroup(ctx, g)
	if err != nil && len(g) > 1 {
		for _, r := range g {
			r.done <- s.applyGroup(ctx, []*applyReq{r})
		}
		return
	}
	for _, r := range g {
		r.done <- err
	}
}

// applyGroup runs pgApplyGroup for g (a statement commits by itself: no
// BEGIN or COMMIT round trips) and marks the transitions applied. The
// rows are given sorted by entity, so that groups of two processes
// touching the same entities lock them in the same order.
func (s *Postgres) applyGroup(ctx context.Context, g []*applyReq) error {
	if len(g) == 1 && len(g[0].t.Timers) == 0 {
		r := g[0]
		q, args := pgApplyNext, []any{r.machine, r.key, r.t.To, r.atMS, r.t.Event, r.t.From, r.t.Input, r.expect}
		if r.expect == 0 {
			q, args = pgApplyNew, args[:7]
		}
		tag, err := s.pool.Exec(ctx, q, args...)
		r.applied = err == nil && tag.RowsAffected() == 1
		return err
	}
	sorted := slices.Clone(g)
	slices.SortFunc(sorted, func(a, b *applyReq) int {
		return cmp.Or(cmp.Compare(a.machine, b.machine), cmp.Compare(a.key, b.key))
	})
	n := len(sorted)
	idx := make([]int32, n)
	machs, keys, tos, events, froms, inputs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	expects, ats := make([]int64, n), make([]int64, n)
	var tIdx []int32
	var tEvents, tTopics []string
	var tDue []int64
	for i, r := range sorted {
		idx[i], machs[i], keys[i], expects[i] = int32(i), r.machine, r.key, r.expect
		tos[i], events[i], froms[i], inputs[i], ats[i] = r.t.To, r.t.Event, r.t.From, r.t.Input, r.atMS
		for _, tm := range r.t.Timers {
			tIdx, tEvents, tTopics, tDue = append(tIdx, int32(i)), append(tEvents, tm.Event), append(tTopics, tm.Topic), append(tDue, tm.Due.UnixMilli())
		}
	}
	q, args := pgApplyGroup+pgApplyGroupEnd, []any{idx, machs, keys, expects, tos, events, froms, inputs, ats}
	if tIdx != nil {
		q, args = pgApplyGroup+pgApplyGroupTimers+pgApplyGroupEnd, append(args, tIdx, tEvents, tTopics, tDue)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var i int32
		if err := rows.Scan(&i, nil); err != nil {
			return err
		}
		if i < 0 || int(i) >= n {
			return fmt.Errorf("machines: group commit returned transition %d of %d", i, n)
		}
		sorted[i].applied = true // at version expect+1 (the statement's WHERE)
	}
	if err := rows.Err(); err != nil {
		for _, r := range sorted {
			r.applied = false
		}
		return err
	}
	return nil
}
