package flows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/sluicehq/sluice/nodes"
)

// Retry bounds how a failing step is retried before the message is
// dead-lettered.
type Retry struct {
	MaxAttempts int           // 1 means no retry; 0 means until ctx ends
	Backoff     time.Duration // first wait, doubled each time, with jitter
	MaxBackoff  time.Duration
	MaxElapsed  time.Duration // 0: unbounded (the run's timeout still applies)
}

// forever retries background work (watches, streams, event publishes)
// until its context ends: from 1s, doubling, up to 30s between tries.
var forever = Retry{Backoff: time.Second, MaxBackoff: 30 * time.Second}

// retry calls op until it succeeds, returns a permanent error
// (nodes.Permanent), or p or ctx give up, waiting between calls with
// exponential backoff and ±50% jitter (cenkalti/backoff, as Watermill's
// retry middleware). notify, when not nil, hears of each failure that will
// be retried and the wait before the next call. It returns how many calls
// were made and the last error: when ctx ends during a wait, that is the
// last call's error wrapped with the context's.
func retry(ctx context.Context, p Retry, op func() error, notify func(err error, wait time.Duration)) (attempts int, err error) {
	// Most calls succeed the first time: no backoff is set up for them.
	return retryAfter(ctx, p, op(), op, notify)
}

// retries reports whether a first call's error is retried under p.
func retries(p Retry, first error) bool {
	return first != nil && !nodes.IsPermanent(first) && p.MaxAttempts != 1
}

// retryAfter is retry once the first call was made and failed with first
// (a caller on a hot path makes it without building op's closure).
func retryAfter(ctx context.Context, p Retry, first error, op func() error, notify func(err error, wait time.Duration)) (attempts int, err error) {
	attempts = 1
	if !retries(p, first) {
		return attempts, first
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.RandomizationFactor = p.Backoff, p.MaxBackoff, 0.5
	if bo.InitialInterval <= 0 {
		bo.InitialInterval = 100 * time.Millisecond
	}
	if bo.MaxInterval < bo.InitialInterval {
		bo.MaxInterval = bo.InitialInterval
	}
	start := time.Now()
	opts := []backoff.RetryOption{backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(p.MaxElapsed),
		backoff.WithMaxTries(uint(max(p.MaxAttempts, 0)))}
	if notify != nil {
		opts = append(opts, backoff.WithNotify(notify))
	}
	last, handed := first, false
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		if handed { // backoff's first try is the call made above
			attempts++
			last = op()
		}
		handed = true
		if last != nil && nodes.IsPermanent(last) {
			return struct{}{}, backoff.Permanent(last)
		}
		if ra, ok := nodes.RetryAfterOf(last); ok {
			return struct{}{}, &backoff.RetryAfterError{Duration: ra}
		}
		return struct{}{}, last
	}, opts...)
	switch {
	case err == nil:
		return attempts, nil
	case last == nil:
		return attempts, err
	case !errors.Is(err, last) && ctx.Err() != nil:
		// ctx ended while waiting to retry: the last failure is the reason.
		return attempts, fmt.Errorf("%w (gave up: %v)", last, context.Cause(ctx))
	case p.MaxElapsed > 0 && (p.MaxAttempts == 0 || attempts < p.MaxAttempts) && !nodes.IsPermanent(last) && ctx.Err() == nil:
		return attempts, fmt.Errorf("gave up after %d attempts in %s (max_elapsed %s): %w", attempts, time.Since(start).Round(time.Millisecond), p.MaxElapsed, last)
	}
	return attempts, last
}
