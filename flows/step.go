package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// A step's work goes through small wrappers, one concern each, like
// Watermill's handler middleware: record (the step's record and metrics),
// retry (policy and backoff), timeout (the deadline, enforced), recoverer
// (a panic is a permanent error), then the call itself. Message steps and
// batch writes share them. When tracing, trace (a span per attempt,
// trace.go) sits between retry and timeout.

// call is one step's work in a run: Process on the run's envelope, or a
// batch's Flush.
type call struct {
	step *Step
	dl   *nodes.Delivery                 // nil for a batch write
	do   func(ctx context.Context) error // nil: the step's node processes the envelope
	// forever retries transient failures until the run's context ends
	// (batch writes: nothing is committed meanwhile).
	forever bool

	rec state.StepRun
	// start and end bound the call (mono readings, recordStep's): a
	// caller may give the start it read already (the end of the step
	// before); 0 means read it.
	start, end time.Duration
	tries      int // attempts of the call so far (retryStep)
	firstFail  time.Time
	// abandoned is closed when an attempt the timeout gave up on returns;
	// nil when none is pending. The envelope is not touched until then.
	abandoned chan struct{}
}

// handler runs a call; wrapper adds one concern to a handler.
type (
	handler func(ctx context.Context, c *call) error
	wrapper func(next handler) handler
)

// chain wraps h so the first wrapper is the outermost.
func chain(h handler, ws ...wrapper) handler {
	for i := len(ws) - 1; i >= 0; i-- {
		h = ws[i](h)
	}
	return h
}

// invoke is the innermost handler: the call itself (the node's Process on
// the envelope, unless do says otherwise).
func invoke(ctx context.Context, c *call) error {
	if c.do != nil {
		return c.do(ctx)
	}
	return c.step.Node.Process(ctx, c.dl.Envelope())
}

// stepHandler is a flow's handler of its steps' calls.
func (r *runner) stepHandler() handler {
	if r.tr != nil {
		return chain(invoke, r.recordStep, r.retryStep, r.traceStep, r.timeoutStep, r.recoverStep)
	}
	return chain(invoke, r.recordStep, r.retryStep, r.timeoutStep, r.recoverStep)
}

// recordStep fills the call's record (status, duration, error) and
// counts it in the step's metrics, once per step, retries included.
func (r *runner) recordStep(next handler) handler {
	return func(ctx context.Context, c *call) error {
		if c.start == 0 {
			c.start = mono()
		}
		c.rec.ID, c.rec.Node = c.step.ID, c.step.Type
		err := next(ctx, c)
		c.end = mono()
		c.rec.Duration, c.rec.Status = c.end-c.start, "succeeded"
		sm := r.m.steps[c.step]
		if err != nil {
			c.rec.Status, c.rec.Error = "failed", err.Error()
			sm.failed.Inc()
		} else {
			sm.succeeded.Inc()
		}
		sm.latency.Observe(c.rec.Duration.Seconds())
		return err
	}
}

// retryStep retries transient failures with the step's (or the flow's)
// policy. An attempt the timeout abandoned is waited for before the next
// one, so two attempts never share the envelope. The first attempt is
// made directly: the closures retrying needs are built only on failure.
func (r *runner) retryStep(next handler) handler {
	return func(ctx context.Context, c *call) error {
		p := r.f.Retry
		if c.step.Retry != nil {
			p = *c.step.Retry
		}
		if c.forever {
			p.MaxAttempts, p.MaxElapsed = 0, 0
		}
		c.tries = 0
		err := r.attempt(ctx, c, next)
		attempts := 1
		if retries(p, err) {
			attempts, err = retryAfter(ctx, p, err, func() error { return r.attempt(ctx, c, next) }, func(err error, wait time.Duration) {
				lvl := slog.LevelDebug
				if c.forever {
					lvl = slog.LevelWarn
				}
				r.log.Log(ctx, lvl, "step failed; retrying", "step", c.step.ID, "node", c.step.Type, "wait", wait, "error", err)
			})
		}
		c.rec.Attempts += attempts
		return err
	}
}

// attempt is one attempt of a call (retryStep's).
func (r *runner) attempt(ctx context.Context, c *call, next handler) error {
	if c.abandoned != nil {
		select {
		case <-c.abandoned:
			c.abandoned = nil
		case <-ctx.Done():
			return nodes.Permanent(fmt.Errorf("step %s: an abandoned attempt had not returned when the run ended: %w", c.step.ID, context.Cause(ctx)))
		}
	}
	c.tries++
	if c.dl != nil {
		c.dl.SetAttempt(c.tries)
	}
	err := next(ctx, c)
	if c.dl != nil && c.abandoned == nil {
		calls := c.dl.TakeCalls()
		r.m.observeCalls(calls)
		c.rec.Calls = append(c.rec.Calls, calls...)
		if l := c.dl.TakeLog(); l != "" || err == nil {
			c.rec.Log = l
		}
	}
	if err != nil {
		r.m.steps[c.step].failedAttempts.Inc()
		if c.firstFail.IsZero() {
			c.firstFail = time.Now()
		}
	}
	return err
}

// abandonAfter is how long a node whose context ended may take to return
// before the engine stops waiting for it.
const abandonAfter = 50 * time.Millisecond

// errAbandoned says a step's node ignored its deadline.
var errAbandoned = errors.New("the node did not return after its deadline; the call was abandoned")

// timeoutStep bounds one attempt by the step's timeout (and the run's).
// Nodes that are nodes.Prompt run here with the deadline on their context;
// any other node runs on its own goroutine, and if it has not returned
// abandonAfter past the deadline the attempt fails as a transient timeout
// and the call is abandoned: it goes on until the node returns, its result
// discarded (sluice_step_abandoned_calls counts those still running).
func (r *runner) timeoutStep(next handler) handler {
	return func(ctx context.Context, c *call) error {
		timeout := c.step.Timeout
		if timeout <= 0 && c.dl == nil {
			timeout = r.f.Timeout // batch writes: one attempt is bounded by the run timeout
		}
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		if _, ok := c.step.Node.(nodes.Prompt); ok && c.dl != nil {
			return timedOut(ctx, next(ctx, c))
		}
		done := make(chan error, 1)
		go func() { done <- next(ctx, c) }()
		select {
		case err := <-done:
			return timedOut(ctx, err)
		case <-ctx.Done():
		}
		t := time.NewTimer(abandonAfter)
		defer t.Stop()
		select {
		case err := <-done:
			return timedOut(ctx, err)
		case <-t.C:
		}
		abandoned := make(chan struct{})
		c.abandoned = abandoned
		r.e.m.abandoned.Inc()
		go func() {
			<-done
			r.e.m.abandoned.Dec()
			close(abandoned)
		}()
		r.log.Warn("node did not return after its deadline; call abandoned", "step", c.step.ID, "node", c.step.Type, "timeout", timeout)
		return fmt.Errorf("step timed out: %w: %w", errAbandoned, context.Cause(ctx))
	}
}

// timedOut names a deadline the node returned on.
func timedOut(ctx context.Context, err error) error {
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("step timed out: %w", err)
	}
	if err == nil && ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Finished, but past its deadline: what it did may be partial.
		return fmt.Errorf("step timed out: %w", ctx.Err())
	}
	return err
}

// recoverStep turns a panic in the node into a permanent error of its
// step: the process keeps serving.
func (r *runner) recoverStep(next handler) handler {
	return func(ctx context.Context, c *call) (err error) {
		defer func() {
			if p := recover(); p != nil {
				r.log.Error("panic in node", "step", c.step.ID, "node", c.step.Type, "panic", p, "stack", string(debug.Stack()))
				err = nodes.Permanent(fmt.Errorf("panic in %s: %v", c.step.Type, p))
			}
		}()
		return next(ctx, c)
	}
}
