package flows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunContext: a run's context behaves as context.WithTimeout's, its
// timer armed only when Done is asked for.
func TestRunContext(t *testing.T) {
	t.Run("deadline passes without Done", func(t *testing.T) {
		ctx, stop := newRunContext(t.Context(), 20*time.Millisecond)
		defer stop()
		d, ok := ctx.Deadline()
		assert.True(t, ok)
		assert.WithinDuration(t, time.Now().Add(20*time.Millisecond), d, 20*time.Millisecond)
		require.NoError(t, ctx.Err())
		require.Eventually(t, func() bool { return ctx.Err() != nil }, 10*time.Second, time.Millisecond)
		assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
		assert.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)
		assert.False(t, ctx.armed.Load(), "nothing asked for Done: no timer")
		<-ctx.Done() // armed past the deadline: closed at once
		assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	})
	t.Run("Done closes at the deadline, children too", func(t *testing.T) {
		ctx, stop := newRunContext(t.Context(), 30*time.Millisecond)
		defer stop()
		child, cancel := context.WithCancel(ctx)
		defer cancel()
		select {
		case <-child.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the child was not cancelled at the run's deadline")
		}
		assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
		assert.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)
	})
	t.Run("stop ends it, before or after arming", func(t *testing.T) {
		for _, armFirst := range []bool{false, true} {
			ctx, stop := newRunContext(t.Context(), time.Hour)
			if armFirst {
				_ = ctx.Done()
			}
			stop()
			<-ctx.Done()
			assert.ErrorIs(t, ctx.Err(), context.Canceled, "armed first: %v", armFirst)
		}
	})
	t.Run("the parent's end and deadline", func(t *testing.T) {
		parent, cancel := context.WithCancelCause(t.Context())
		ctx, stop := newRunContext(parent, time.Hour)
		defer stop()
		boom := errors.New("shutdown")
		cancel(boom)
		assert.ErrorIs(t, ctx.Err(), context.Canceled)
		assert.ErrorIs(t, context.Cause(ctx), boom)
		<-ctx.Done()

		early, cancelEarly := context.WithTimeout(t.Context(), time.Minute)
		defer cancelEarly()
		ctx2, stop2 := newRunContext(early, time.Hour)
		defer stop2()
		d, _ := ctx2.Deadline()
		pd, _ := early.Deadline()
		assert.Equal(t, pd, d, "the parent's earlier deadline")
		type key struct{}
		withValue := context.WithValue(t.Context(), key{}, "v")
		ctx3, stop3 := newRunContext(withValue, time.Hour)
		defer stop3()
		assert.Equal(t, "v", ctx3.Value(key{}))
		_ = ctx3.Done()
		assert.Equal(t, "v", ctx3.Value(key{}), "armed: values still the parent's")
	})
}
