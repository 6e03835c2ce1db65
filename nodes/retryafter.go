package nodes

import (
	"errors"
	"time"
)

// retryAfter is a transient error that says when to try again.
type retryAfter struct {
	err   error
	after time.Duration
}

func (r retryAfter) Error() string { return r.err.Error() }
func (r retryAfter) Unwrap() error { return r.err }

// RetryAfter marks err as transient and asks the engine to wait d before
// the next attempt (an HTTP 429 or 503 with Retry-After), instead of its
// backoff. nil stays nil; a permanent error stays permanent.
func RetryAfter(err error, d time.Duration) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return retryAfter{err: err, after: d}
}

// RetryAfterOf returns the wait RetryAfter put on err, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r retryAfter
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}
