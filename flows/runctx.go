package flows

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// runContext is a run's context: its parent's values and cancellation,
// and the run's deadline. context.WithTimeout arms a runtime timer for
// every run, which cost about a fifth of the engine's CPU on a flow of
// quick steps (measured with sluicebench); most runs end long before
// their deadline and never wait on Done (expressions ask Err). So the
// timer is armed only when something asks for Done (a node waiting on
// I/O, a child context); until then Err compares the clock with the
// deadline. Seen from a node it is a context with that deadline, done at
// the deadline, when its parent is, and when the run ends (stop).
type runContext struct {
	parent   context.Context
	deadline time.Time
	start    time.Time     // with its monotonic reading
	budget   time.Duration // deadline - start: Err reads only the monotonic clock

	armed   atomic.Bool // inner is set
	ended   atomic.Bool // stop was called
	expired atomic.Bool // stop was called past the deadline
	mu      sync.Mutex
	inner   context.Context // the context Done belongs to, once armed
	stopI   context.CancelFunc
}

// newRunContext returns a run's context ending timeout from now (or at
// its parent's deadline, when earlier), and the stop to call when the run
// ends, as context.WithTimeout's cancel.
func newRunContext(parent context.Context, timeout time.Duration) (*runContext, func()) {
	now := time.Now()
	c := &runContext{parent: parent, deadline: now.Add(timeout), start: now}
	if d, ok := parent.Deadline(); ok && d.Before(c.deadline) {
		c.deadline = d
	}
	c.budget = c.deadline.Sub(now)
	return c, c.stop
}

// Deadline implements context.Context.
func (c *runContext) Deadline() (time.Time, bool) { return c.deadline, true }

// Done implements context.Context: it arms the deadline's timer.
func (c *runContext) Done() <-chan struct{} { return c.arm().Done() }

// Err implements context.Context.
func (c *runContext) Err() error {
	if c.armed.Load() {
		return c.inner.Err()
	}
	if c.ended.Load() {
		if c.expired.Load() {
			return context.DeadlineExceeded
		}
		return context.Canceled
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if time.Since(c.start) >= c.budget {
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context. Once armed the values are the inner
// context's, so children (and context.Cause) find its cancellation.
func (c *runContext) Value(key any) any {
	if c.armed.Load() {
		return c.inner.Value(key)
	}
	return c.parent.Value(key)
}

// arm makes the context Done belongs to: the parent's with the deadline,
// or one cancelled already when the run ended first.
func (c *runContext) arm() context.Context {
	if c.armed.Load() {
		return c.inner
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.inner, c.stopI = context.WithDeadline(c.parent, c.deadline)
		if c.ended.Load() {
			c.stopI()
		}
		c.armed.Store(true)
	}
	return c.inner
}

// stop ends the context (the run is over) and releases its timer.
func (c *runContext) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil && time.Since(c.start) >= c.budget {
		c.expired.Store(true) // as a timer would have ended it first
	}
	c.ended.Store(true)
	if c.inner != nil {
		c.stopI()
	}
}

var _ context.Context = (*runContext)(nil)
