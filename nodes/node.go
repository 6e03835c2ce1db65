// Package nodes is the contract between the engine and the functions a flow
// chains: a Node processes one message Envelope (the engine keeps the
// other side of it, a Delivery); a Spec describes a node type (its fields,
// defaults and examples) and constructs it from a validated Config; a
// Registry, which checks every spec it is given, maps type names such as
// "image.thumbnail" to specs.
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

	"github.com/ThreeDotsLabs/watermill/message"

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
	// concurrency setting), for nodes sizing pools such as ai.onnx's
	// sessions; 0 when the engine does not say.
	Concurrency int
	// State is the state database's URL (sluice --state): a postgres://
	// URL names a database every process shares, where nodes keeping
	// state (state.transition) keep it too. Empty or sqlite://: local
	// files in StateDir.
	State string
	// Publish publishes messages to a topic of the engine's broker, for
	// nodes that publish outside a run (state.transition's timers) from
	// their Start. It may be called only after Start; nil when validating.
	Publish func(ctx context.Context, topic string, msgs ...*message.Message) error
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
