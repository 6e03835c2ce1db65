package machines

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
)

// commitAsOneGroup commits rs as one group, as Apply's leader does, and
// returns each one's answer.
func commitAsOneGroup(s *Postgres, rs []*applyReq) []error {
	s.commitGroup(context.Background(), rs)
	errs := make([]error, len(rs))
	for i, r := range rs {
		errs[i] = <-r.done
	}
	return errs
}

func req(key string, expect int64, t Transition) *applyReq {
	return &applyReq{machine: "order", key: key, expect: expect, t: t, atMS: time.Now().UnixMilli(), done: make(chan error, 1)}
}

// TestPostgresGroupOutcomes: one statement applies a group whose
// transitions conflict in every way, each with its own outcome.
func TestPostgresGroupOutcomes(t *testing.T) {
	s, err := OpenPostgres(t.Context(), pgtest.URL(t))
	require.NoError(t, err)
	defer s.Close()
	ctx := t.Context()
	_, _, err = s.Apply(ctx, "order", "a", 0, Transition{Event: "create", To: "created", Input: "a0"})
	require.NoError(t, err)
	rs := []*applyReq{
		req("a", 1, Transition{Event: "pay", From: "created", To: "paid", Input: "a1"}),
		req("b", 0, Transition{Event: "create", To: "created", Input: "b0", Timers: []Timer{{Event: "expire", Topic: "t", Due: time.Now()}}}),
		req("c", 4, Transition{Event: "pay", From: "created", To: "paid", Input: "c1"}), // never seen
	}
	for _, e := range []string{"d", "e", "f"} {
		_, _, err = s.Apply(ctx, "order", e, 0, Transition{Event: "create", To: "created", Input: e + "0"})
		require.NoError(t, err)
	}
	rs = append(rs,
		req("d", 0, Transition{Event: "create", To: "created", Input: "d9"}),                  // exists
		req("e", 1, Transition{Event: "create", From: "created", To: "created", Input: "e0"}), // redelivered
		req("f", 2, Transition{Event: "pay", From: "created", To: "paid", Input: "f1"}),       // stale
	)
	for i, err := range commitAsOneGroup(s, rs) {
		require.NoError(t, err, "a group's statement raises for none of them (%d)", i)
	}
	var applied []bool
	for _, r := range rs {
		applied = append(applied, r.applied)
	}
	assert.Equal(t, []bool{true, true, false, false, false, false}, applied)
	for key, n := range map[string]int{"a": 2, "b": 1, "c": 0, "d": 1, "e": 1, "f": 1} {
		h, err := s.History(ctx, "order", key)
		require.NoError(t, err)
		assert.Len(t, h, n, key)
	}
	ts, _, err := s.Timers(ctx, "order", "b")
	require.NoError(t, err)
	assert.Len(t, ts, 1)
}

// TestPostgresGroupFailureIsolated: when a group's statement fails, the
// others of the group still apply, and only the transition at fault gets
// the error.
func TestPostgresGroupFailureIsolated(t *testing.T) {
	s, err := OpenPostgres(t.Context(), pgtest.URL(t))
	require.NoError(t, err)
	defer s.Close()
	var rs []*applyReq
	for i := range 4 {
		rs = append(rs, req(fmt.Sprint("o-", i), 0, Transition{Event: "create", To: "created", Input: fmt.Sprint("m", i)}))
	}
	// PostgreSQL refuses text that is not UTF-8: the statement fails.
	rs[2].t.Input = "bad\xff"
	errs := commitAsOneGroup(s, rs)
	require.Error(t, errs[2])
	assert.Contains(t, errs[2].Error(), "UTF8")
	for _, i := range []int{0, 1, 3} {
		require.NoError(t, errs[i])
		assert.True(t, rs[i].applied)
		e, err := s.Get(t.Context(), "order", fmt.Sprint("o-", i))
		require.NoError(t, err)
		assert.Equal(t, int64(1), e.Version)
	}
	_, err = s.Get(t.Context(), "order", "o-2")
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestPostgresQueuedTransitionsCommitTogether: callers arriving while a
// commit is under way queue, and the next commit takes them all in one
// group.
func TestPostgresQueuedTransitionsCommitTogether(t *testing.T) {
	s, err := OpenPostgres(t.Context(), pgtest.URL(t))
	require.NoError(t, err)
	defer s.Close()
	const n = 8
	s.mu.Lock()
	s.inFlight = 1 // as if a commit were under way
	s.mu.Unlock()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, applied, err := s.Apply(t.Context(), "order", fmt.Sprint("o-", i), 0, Transition{Event: "create", To: "created", Input: fmt.Sprint("m", i)})
			if err == nil && !applied {
				err = fmt.Errorf("o-%d not applied", i)
			}
			errs <- err
		}()
	}
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.waiting) == n
	}, 10*time.Second, time.Millisecond)
	s.mu.Lock()
	s.commitQueued(t.Context(), nil) // the commit under way, done, takes what queued
	s.mu.Unlock()
	for range n {
		require.NoError(t, <-errs)
	}
	assert.Equal(t, int64(1), s.groups.Load(), "one group")
	assert.Equal(t, int64(n), s.grouped.Load())
	all, err := s.List(t.Context(), "order", "created", 0)
	require.NoError(t, err)
	assert.Len(t, all, n)
}
