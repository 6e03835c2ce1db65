// Package machinestest is the conformance suite every machines.Store
// passes.
package machinestest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/machines"
)

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) machines.Store) {
	t.Run("GetUnknown", func(t *testing.T) {
		s := open(t)
		_, err := s.Get(t.Context(), "order", "nope")
		assert.ErrorIs(t, err, machines.ErrNotFound)
	})
	t.Run("ApplyAndHistory", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		e, applied, err := s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", From: "", To: "created", Input: "m1", At: at})
		require.NoError(t, err)
		assert.True(t, applied)
		assert.Equal(t, machines.Entity{Machine: "order", Key: "o-1", State: "created", Version: 1, Updated: at}, e)
		e, _, err = s.Apply(ctx, "order", "o-1", 1, machines.Transition{Event: "pay", From: "created", To: "paid", Input: "m2", At: at.Add(time.Second)})
		require.NoError(t, err)
		assert.Equal(t, int64(2), e.Version)
		got, err := s.Get(ctx, "order", "o-1")
		require.NoError(t, err)
		assert.Equal(t, e, got)
		h, err := s.History(ctx, "order", "o-1")
		require.NoError(t, err)
		assert.Equal(t, []machines.Transition{
			{Version: 1, Event: "create", From: "", To: "created", Input: "m1", At: at},
			{Version: 2, Event: "pay", From: "created", To: "paid", Input: "m2", At: at.Add(time.Second)},
		}, h)
		_, err = s.Get(ctx, "invoice", "o-1")
		assert.ErrorIs(t, err, machines.ErrNotFound, "machines are separate namespaces")
	})
	t.Run("StaleVersionConflicts", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		_, _, err := s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m1"})
		require.NoError(t, err)
		_, _, err = s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m9"})
		assert.ErrorIs(t, err, machines.ErrConflict, "a second create from version 0")
		_, _, err = s.Apply(ctx, "order", "o-1", 5, machines.Transition{Event: "pay", From: "created", To: "paid", Input: "m2"})
		assert.ErrorIs(t, err, machines.ErrConflict)
		e, err := s.Get(ctx, "order", "o-1")
		require.NoError(t, err)
		assert.Equal(t, "created", e.State)
		assert.Equal(t, int64(1), e.Version)
	})
	t.Run("RedeliveredInputAppliesOnce", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		_, _, err := s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m1"})
		require.NoError(t, err)
		e, applied, err := s.Apply(ctx, "order", "o-1", 1, machines.Transition{Event: "create", From: "created", To: "created", Input: "m1"})
		require.NoError(t, err)
		assert.False(t, applied)
		assert.Equal(t, int64(1), e.Version)
		h, _ := s.History(ctx, "order", "o-1")
		assert.Len(t, h, 1)
		tr, ok, err := s.ByInput(ctx, "order", "o-1", "m1")
		require.NoError(t, err)
		assert.True(t, ok)
		assert.Equal(t, "created", tr.To)
		_, ok, err = s.ByInput(ctx, "order", "o-1", "m2")
		require.NoError(t, err)
		assert.False(t, ok)
	})
	t.Run("ConcurrentEventsNeverShareAVersion", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		_, _, err := s.Apply(ctx, "counter", "c", 0, machines.Transition{Event: "start", To: "s0", Input: "start"})
		require.NoError(t, err)
		const n = 20
		var wg sync.WaitGroup
		conflicts := make(chan int, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := 0
				for {
					e, err := s.Get(ctx, "counter", "c")
					if !assert.NoError(t, err) {
						return
					}
					_, _, err = s.Apply(ctx, "counter", "c", e.Version, machines.Transition{Event: "inc", From: e.State, To: fmt.Sprintf("s%d", e.Version), Input: fmt.Sprint("inc-", i)})
					if errors.Is(err, machines.ErrConflict) {
						c++
						continue
					}
					assert.NoError(t, err)
					conflicts <- c
					return
				}
			}()
		}
		wg.Wait()
		close(conflicts)
		h, err := s.History(ctx, "counter", "c")
		require.NoError(t, err)
		require.Len(t, h, n+1)
		for i, tr := range h {
			assert.Equal(t, int64(i+1), tr.Version)
			if i > 0 {
				assert.Equal(t, h[i-1].To, tr.From, "each transition starts where the previous one ended")
			}
		}
	})
	t.Run("ConcurrentTransitionsOnManyEntities", func(t *testing.T) {
		// As the engine's lanes apply them: each worker its own entities,
		// in order, all workers at once.
		s := open(t)
		ctx := t.Context()
		const workers, entities, steps = 16, 4, 5
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for step := range steps {
					for k := range entities {
						key := fmt.Sprintf("e-%d-%d", w, k)
						e, applied, err := s.Apply(ctx, "flip", key, int64(step), machines.Transition{Event: "flip",
							From: fmt.Sprint("s", step), To: fmt.Sprint("s", step+1), Input: fmt.Sprintf("%s-m%d", key, step)})
						if !assert.NoError(t, err, key) {
							return
						}
						assert.True(t, applied, key)
						assert.Equal(t, int64(step+1), e.Version, key)
					}
				}
			}()
		}
		wg.Wait()
		all, err := s.List(ctx, "flip", "", workers*entities+1)
		require.NoError(t, err)
		require.Len(t, all, workers*entities)
		for _, e := range all {
			assert.Equal(t, int64(steps), e.Version, e.Key)
			assert.Equal(t, fmt.Sprint("s", steps), e.State, e.Key)
			h, err := s.History(ctx, "flip", e.Key)
			require.NoError(t, err)
			require.Len(t, h, steps, e.Key)
			for i, tr := range h {
				assert.Equal(t, int64(i+1), tr.Version)
				assert.Equal(t, fmt.Sprintf("%s-m%d", e.Key, i), tr.Input)
			}
		}
	})
	t.Run("ConflictsAmongConcurrentTransitions", func(t *testing.T) {
		// Transitions applied at once (one group on a store that groups
		// them): each gets its own outcome; a conflict, a second create
		// and a redelivered input fail or skip only themselves.
		s := open(t)
		ctx := t.Context()
		for i := range 3 {
			_, _, err := s.Apply(ctx, "order", fmt.Sprint("o-", i), 0, machines.Transition{Event: "create", To: "created", Input: fmt.Sprint("c-", i)})
			require.NoError(t, err)
		}
		type outcome struct {
			e       machines.Entity
			applied bool
			err     error
		}
		cases := []struct {
			key    string
			expect int64
			tr     machines.Transition
		}{
			{"o-0", 1, machines.Transition{Event: "pay", From: "created", To: "paid", Input: "p-0"}},       // applies
			{"o-1", 7, machines.Transition{Event: "pay", From: "created", To: "paid", Input: "p-1"}},       // stale version
			{"o-2", 0, machines.Transition{Event: "create", To: "created", Input: "c-2b"}},                 // exists already
			{"o-2", 1, machines.Transition{Event: "create", From: "created", To: "created", Input: "c-2"}}, // redelivered input
			{"o-3", 0, machines.Transition{Event: "create", To: "created", Input: "c-3", Timers: []machines.Timer{ // new, with a timer
				{Event: "expire", Topic: "orders", Due: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}}},
			{"o-4", 3, machines.Transition{Event: "pay", From: "created", To: "paid", Input: "p-4"}}, // never seen
		}
		got := make([]outcome, len(cases))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, c := range cases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				e, applied, err := s.Apply(ctx, "order", c.key, c.expect, c.tr)
				got[i] = outcome{e, applied, err}
			}()
		}
		close(start)
		wg.Wait()
		assert.NoError(t, got[0].err)
		assert.True(t, got[0].applied)
		assert.Equal(t, "paid", got[0].e.State)
		assert.Equal(t, int64(2), got[0].e.Version)
		assert.ErrorIs(t, got[1].err, machines.ErrConflict, "stale version")
		assert.ErrorIs(t, got[2].err, machines.ErrConflict, "a second create")
		assert.NoError(t, got[3].err, "a redelivered input is no error")
		assert.False(t, got[3].applied)
		assert.Equal(t, int64(1), got[3].e.Version)
		assert.NoError(t, got[4].err)
		assert.True(t, got[4].applied)
		assert.Equal(t, int64(1), got[4].e.Version)
		assert.ErrorIs(t, got[5].err, machines.ErrConflict, "an entity never seen is at version 0")
		for key, versions := range map[string]int{"o-0": 2, "o-1": 1, "o-2": 1, "o-3": 1} {
			h, err := s.History(ctx, "order", key)
			require.NoError(t, err)
			assert.Len(t, h, versions, key)
		}
		_, err := s.Get(ctx, "order", "o-4")
		assert.ErrorIs(t, err, machines.ErrNotFound)
		ts, _, err := s.Timers(ctx, "order", "o-3")
		require.NoError(t, err)
		require.Len(t, ts, 1)
		assert.Equal(t, machines.Timer{Machine: "order", Key: "o-3", Version: 1, State: "created", Event: "expire", Topic: "orders",
			Due: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, ts[0])
	})
	t.Run("SameEntityAtOnce", func(t *testing.T) {
		// Many transitions of one entity from one version at once: one
		// applies; the same input twice applies once.
		s := open(t)
		ctx := t.Context()
		_, _, err := s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m0"})
		require.NoError(t, err)
		const n = 12
		applied := make([]bool, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				input := fmt.Sprint("m", 1+i/2) // pairs share an input
				_, applied[i], errs[i] = s.Apply(ctx, "order", "o-1", 1, machines.Transition{Event: "pay", From: "created", To: "paid", Input: input})
			}()
		}
		close(start)
		wg.Wait()
		won := -1
		for i := range n {
			if applied[i] {
				require.Equal(t, -1, won, "two transitions applied from version 1")
				won = i
				assert.NoError(t, errs[i])
			}
		}
		require.NotEqual(t, -1, won, "one transition applies")
		for i := range n {
			switch {
			case i == won:
			case i/2 == won/2:
				assert.NoError(t, errs[i], "the same input again: applied already")
			default:
				assert.ErrorIs(t, errs[i], machines.ErrConflict)
			}
		}
		h, err := s.History(ctx, "order", "o-1")
		require.NoError(t, err)
		require.Len(t, h, 2)
		assert.Equal(t, fmt.Sprint("m", 1+won/2), h[1].Input)
	})
	t.Run("List", func(t *testing.T) {
		s := open(t)
		ctx := context.Background()
		for i, st := range []string{"paid", "created", "paid", "shipped"} {
			_, _, err := s.Apply(ctx, "order", fmt.Sprintf("o-%d", i), 0, machines.Transition{Event: "x", To: st, Input: fmt.Sprint(i)})
			require.NoError(t, err)
		}
		paid, err := s.List(ctx, "order", "paid", 0)
		require.NoError(t, err)
		require.Len(t, paid, 2)
		assert.Equal(t, []string{"o-0", "o-2"}, []string{paid[0].Key, paid[1].Key})
		all, err := s.List(ctx, "order", "", 3)
		require.NoError(t, err)
		assert.Len(t, all, 3)
	})
	t.Run("TimerFiresOnceWhileCurrent", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		_, _, err := s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m1", At: t0,
			Timers: []machines.Timer{{Event: "expire", Topic: "orders", Due: t0.Add(30 * time.Minute)}}})
		require.NoError(t, err)
		var got []machines.Timer
		fire := func(_ context.Context, ts []machines.Timer) error { got = append(got, ts...); return nil }
		n, err := s.FireDue(ctx, "order", t0.Add(29*time.Minute), 10, fire)
		require.NoError(t, err)
		assert.Zero(t, n, "not due yet")
		assert.Empty(t, got)
		n, err = s.FireDue(ctx, "order", t0.Add(31*time.Minute), 10, fire)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		want := machines.Timer{Machine: "order", Key: "o-1", Version: 1, State: "created", Event: "expire", Topic: "orders", Due: t0.Add(30 * time.Minute)}
		assert.Equal(t, []machines.Timer{want}, got)
		assert.Equal(t, "timer:order:o-1:1:expire", want.ID())
		n, err = s.FireDue(ctx, "order", t0.Add(time.Hour), 10, fire)
		require.NoError(t, err)
		assert.Zero(t, n, "fired once")
		ts, fired, err := s.Timers(ctx, "order", "o-1")
		require.NoError(t, err)
		assert.Equal(t, []machines.Timer{want}, ts)
		assert.Equal(t, []bool{true}, fired)
	})
	t.Run("TimerOfAStateLeftIsDropped", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		t0 := time.Now().Add(-time.Hour)
		_, _, err := s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m1", At: t0,
			Timers: []machines.Timer{{Event: "expire", Due: t0.Add(time.Minute)}}})
		require.NoError(t, err)
		_, _, err = s.Apply(ctx, "order", "o-1", 1, machines.Transition{Event: "pay", From: "created", To: "paid", Input: "m2", At: t0})
		require.NoError(t, err)
		n, err := s.FireDue(ctx, "order", time.Now(), 10, func(context.Context, []machines.Timer) error {
			t.Error("a timer of a state the entity left must not fire")
			return nil
		})
		require.NoError(t, err)
		assert.Zero(t, n)
		_, fired, err := s.Timers(ctx, "order", "o-1")
		require.NoError(t, err)
		assert.Equal(t, []bool{false}, fired)
	})
	t.Run("FailedFireLeavesTimersDue", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		t0 := time.Now().Add(-time.Hour)
		_, _, err := s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m1", At: t0,
			Timers: []machines.Timer{{Event: "expire", Due: t0}}})
		require.NoError(t, err)
		boom := errors.New("broker down")
		_, err = s.FireDue(ctx, "order", time.Now(), 10, func(context.Context, []machines.Timer) error { return boom })
		require.ErrorIs(t, err, boom)
		n, err := s.FireDue(ctx, "order", time.Now(), 10, func(context.Context, []machines.Timer) error { return nil })
		require.NoError(t, err)
		assert.Equal(t, 1, n)
	})
	t.Run("ConcurrentClaimsFireEachTimerOnce", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		t0 := time.Now().Add(-time.Hour)
		const n = 40
		for i := range n {
			_, _, err := s.Apply(ctx, "order", fmt.Sprint("o-", i), 0, machines.Transition{Event: "create", To: "created", Input: "m", At: t0,
				Timers: []machines.Timer{{Event: "expire", Due: t0}}})
			require.NoError(t, err)
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k, err := s.FireDue(ctx, "order", time.Now(), 3, func(_ context.Context, ts []machines.Timer) error {
						mu.Lock()
						defer mu.Unlock()
						for _, tm := range ts {
							seen[tm.ID()]++
						}
						return nil
					})
					if !assert.NoError(t, err) || k == 0 {
						return
					}
				}
			}()
		}
		wg.Wait()
		assert.Len(t, seen, n)
		for id, c := range seen {
			assert.Equal(t, 1, c, id)
		}
	})
	t.Run("Lookup", func(t *testing.T) {
		s := open(t)
		lk, ok := s.(machines.Looker)
		if !ok {
			t.Skip("the store has no one-trip Lookup")
		}
		ctx := t.Context()
		_, tr, err := lk.Lookup(ctx, "order", "o-1", "m1")
		assert.ErrorIs(t, err, machines.ErrNotFound)
		assert.Nil(t, tr)
		at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		_, _, err = s.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m1", At: at})
		require.NoError(t, err)
		e, tr, err := lk.Lookup(ctx, "order", "o-1", "m1")
		require.NoError(t, err)
		assert.Equal(t, machines.Entity{Machine: "order", Key: "o-1", State: "created", Version: 1, Updated: at}, e)
		require.NotNil(t, tr)
		assert.Equal(t, machines.Transition{Version: 1, Event: "create", From: "", To: "created", Input: "m1", At: at}, *tr)
		e, tr, err = lk.Lookup(ctx, "order", "o-1", "m2")
		require.NoError(t, err)
		assert.Equal(t, int64(1), e.Version)
		assert.Nil(t, tr)
		_, tr, err = lk.Lookup(ctx, "order", "o-1", "")
		require.NoError(t, err)
		assert.Nil(t, tr, "no input, no transition")
	})
}
