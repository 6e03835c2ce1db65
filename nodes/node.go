// Package nodes is the contract between the engine and the functions a flow
// chains: a Node processes one message Envelope; a Spec describes a node
// type (its fields, defaults and examples) and constructs it from a
// validated Config; a Registry maps type names such as "image.thumbnail"
// to specs.
//
// Lifecycle, for every node: construct (Spec.New, no I/O) → validate (the
// same construction; `sluice validate` stops here) → Start (optional
// Starter, may do I/O) → Process, concurrently, once per message → Close
// (optional Closer, also after a failed start).
//
// Node implementations live in sub-packages, one file per node type, each
// registering its Spec in init(). Import nodes/all to register them all.
package nodes

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sluicehq/sluice/storage"
)

// Node processes one message. Process is called concurrently for different
// messages and must not keep env after it returns. It returns nil when the
// step succeeded; an error wrapped with Permanent when retrying cannot
// help (bad input); any other error is transient and the engine retries.
type Node interface {
	Process(ctx context.Context, env *Envelope) error
}

// Starter is implemented by nodes that need I/O before the first message
// (opening a database, loading a model). Start is called once; the node's
// Close, if any, is called even when Start fails.
type Starter interface {
	Start(ctx context.Context) error
}

// Closer is implemented by nodes holding resources.
type Closer interface {
	Close() error
}

// Deps are the engine's services a node may use. Any may be nil when the
// node is only being validated.
type Deps struct {
	Store  *storage.Store // buckets
	Logger *slog.Logger   // carries flow, step and node attributes
	// StateDir is where nodes may keep local databases.
	StateDir string
	// Concurrency is how many messages the flow processes at once (its
	// `concurrency`), for nodes that size pools by it; 0 when unknown.
	Concurrency int
}

// ErrPermanent marks errors that retrying cannot fix. Test with
// errors.Is(err, ErrPermanent) or IsPermanent.
var ErrPermanent = errors.New("permanent error")

type permanent struct{ err error }

func (p permanent) Error() string        { return p.err.Error() }
func (p permanent) Unwrap() []error      { return []error{p.err, ErrPermanent} }
func (p permanent) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as permanent; nil stays nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }
