// Package machines stores durable per-entity state machines: each entity
// (an order, a shipment) of a machine has a current state, a version that
// counts its transitions, and the full history of transitions. Stores
// apply a transition only from the version it was decided on (optimistic
// concurrency), so two concurrent events for one entity never both apply
// from the same version. SQLite implements Store here; machinestest holds
// the conformance suite every Store passes.
package machines

import (
	"context"
	"errors"
	"time"
)

// Entity is one entity's current state.
type Entity struct {
	Machine string    `json:"machine"`
	Key     string    `json:"key"`
	State   string    `json:"state"`
	Version int64     `json:"version"` // transitions applied; 0: never seen
	Updated time.Time `json:"updated"`
}

// Transition is one applied event.
type Transition struct {
	Version int64     `json:"version"` // the entity's version after it
	Event   string    `json:"event"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Input   string    `json:"input"` // identity of the message that caused it
	At      time.Time `json:"at"`
}

var (
	// ErrConflict: the entity's version moved since it was read; read
	// again and decide again.
	ErrConflict = errors.New("machines: entity changed concurrently")
	// ErrNotFound: no such entity.
	ErrNotFound = errors.New("machines: no such entity")
)

// Store keeps entities and their histories.
type Store interface {
	// Get returns the entity; a never-seen one is ErrNotFound.
	Get(ctx context.Context, machine, key string) (Entity, error)
	// Apply records t for the entity if its version is still expect (0
	// for a new entity), and returns the entity after it. If the entity
	// moved, ErrConflict. If t.Input already caused a transition of this
	// entity (a redelivered message), nothing changes and Apply returns
	// that transition's outcome with applied false.
	Apply(ctx context.Context, machine, key string, expect int64, t Transition) (e Entity, applied bool, err error)
	// ByInput returns the transition input caused for the entity, if any:
	// how a redelivered message learns it was applied already.
	ByInput(ctx context.Context, machine, key, input string) (Transition, bool, error)
	// History lists the entity's transitions, oldest first.
	History(ctx context.Context, machine, key string) ([]Transition, error)
	// List lists a machine's entities, in a state if state is not empty,
	// by key, at most limit (0: 100).
	List(ctx context.Context, machine, state string, limit int) ([]Entity, error)
	Close() error
}
