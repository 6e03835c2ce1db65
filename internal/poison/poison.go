// Package poison finds inputs whose runs kill the process (a fatal out of
// memory, a crash in C code, a kill by the OOM killer): an input that was
// being run when the process died is counted as a suspect at the next
// start, and the engine dead-letters an input once it has been in flight
// during MaxCrashes deaths, without running it again. Without this, such
// an input is redelivered after every restart and kills the process again,
// forever.
//
// The threat is the process dying, not the machine: what Begin writes
// with a plain pwrite (no fsync) is in the kernel's page cache and
// survives the process's death. So Begin and End cost a system call each
// (a few µs), with no synchronous commit on a message's path; the crash
// counts live in a small SQLite table written only at start, and when a
// suspect finishes.
//
// Usage by the engine, per attempt of a run (Run does exactly this):
//
//	crashes, err := store.Begin(ctx, flow, input) // before running
//	if crashes >= poison.DefaultMaxCrashes { dead-letter without running; store.End(...) }
//	... run ...
//	store.End(ctx, flow, input) // after the run, whatever its outcome
package poison

import (
	"context"
	"errors"
	"fmt"
)

// DefaultMaxCrashes is how many process deaths an input may be in flight
// for before it is dead-lettered without running again.
const DefaultMaxCrashes = 3

// Store records the inputs in flight. Implementations are safe for
// concurrent use.
type Store interface {
	// Begin records that an attempt of flow's run of input starts, and
	// returns how many times the process died while this input was in
	// flight (0 for almost every input). An input that was in flight at a
	// death (crashes > 0) is a suspect: Begin runs suspects one at a time
	// (it waits for the previous suspect's End, or for ctx), so the next
	// death is blamed on the input that caused it and not on its
	// neighbours. Every successful Begin must be followed by one End.
	Begin(ctx context.Context, flow, input string) (crashes int, err error)
	// End records that the attempt finished (whatever its outcome: only
	// a death of the process counts). An input that had crashes is
	// forgotten: it ran to its end this time.
	End(ctx context.Context, flow, input string) error
	// Close releases the store; inputs still in flight stay recorded,
	// as if the process had died.
	Close() error
}

// ErrLocked is returned by Open when another process uses the same home.
var ErrLocked = errors.New("the in-flight record is in use by another sluice process")

// Nop is a Store that records nothing: every input has no crashes. For
// engines without a home (tests, embedded uses that opt out).
type Nop struct{}

var _ Store = Nop{}

// Begin implements Store.
func (Nop) Begin(context.Context, string, string) (int, error) { return 0, nil }

// End implements Store.
func (Nop) End(context.Context, string, string) error { return nil }

// Close implements Store.
func (Nop) Close() error { return nil }

// ErrPoisoned is wrapped by Run's error for an input dead-lettered
// without running: it was in flight at max deaths of the process.
var ErrPoisoned = errors.New("the input was being run each time the process died")

// Run is one attempt of flow's run of input guarded by s: Begin, then
// run unless the input reached max crashes (then an error wrapping
// ErrPoisoned, which the engine dead-letters: retrying means dying
// again), then End whatever happened. Errors of Begin (its context ended
// while a suspect ran) are returned without running: transient.
func Run(ctx context.Context, s Store, max int, flow, input string, run func(context.Context) error) error {
	crashes, err := s.Begin(ctx, flow, input)
	if err != nil {
		return err
	}
	defer func() {
		// A failure to clear the record only risks counting this input at
		// a later death: it does not change this attempt's outcome.
		_ = s.End(ctx, flow, input)
	}()
	if max > 0 && crashes >= max {
		return fmt.Errorf("%w: %d times; dead-lettered without running it again", ErrPoisoned, crashes)
	}
	return run(ctx)
}
