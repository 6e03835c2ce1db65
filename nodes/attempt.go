package nodes

import (
	"errors"
	"time"
)

// Attempt is the current step's attempt, counting from 1; 0 when the
// engine did not say.
func (e *Envelope) Attempt() int { return e.attempt }

// StepID is the id of the step running now (set by SetStep).
func (e *Envelope) StepID() string { return e.step }

// retryAfter is a transient error that names when to try again.
type retryAfter struct {
	err error
	d   time.Duration
}

func (r retryAfter) Error() string { return r.err.Error() }
func (r retryAfter) Unwrap() error { return r.err }

// RetryAfter wraps a transient err with the wait the other side asked for
// (an HTTP Retry-After header); nil stays nil and a permanent err stays as
// it is. The engine should wait at least RetryAfterOf(err) before the next
// attempt instead of its own backoff when that is shorter.
func RetryAfter(err error, d time.Duration) error {
	if err == nil || IsPermanent(err) || d <= 0 {
		return err
	}
	return retryAfter{err: err, d: d}
}

// RetryAfterOf returns the wait an error asks for, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r retryAfter
	if errors.As(err, &r) {
		return r.d, true
	}
	return 0, false
}
