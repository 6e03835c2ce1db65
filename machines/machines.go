// Package machines stores durable per-entity state machines: each entity
// (an order, a shipment) of a machine has a current state, a version that
// counts its transitions, and the full history of transitions. Stores
// apply a transition only from the version it was decided on (optimistic
// concurrency), so two concurrent events for one entity never both apply
// from the same version. SQLite and PostgreSQL implement Store here (the
// PostgreSQL store commits concurrent transitions together); machinestest
// holds the conformance suite every Store passes.
package machines

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Open opens the store a URL names: postgres://… (or postgresql://) for
// PostgreSQL, sqlite://PATH or a bare path for a SQLite file.
func Open(ctx context.Context, url string) (Store, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return OpenPostgres(ctx, url)
	case strings.HasPrefix(url, "sqlite://"):
		return OpenSQLite(strings.TrimPrefix(url, "sqlite://"))
	case strings.Contains(url, "://"):
		return nil, fmt.Errorf("machines: database %q: want sqlite://PATH, a file path or postgres://…", url)
	}
	return OpenSQLite(url)
}

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
	// Timers are set by the transition, in its transaction (Apply fills
	// their machine, key, version and state).
	Timers []Timer `json:"-"`
}

// Timer is a durable timeout: when Due comes and the entity is still at
// Version (in State), Event fires.
type Timer struct {
	Machine string `json:"machine"`
	Key     string `json:"key"`
	Version int64  `json:"version"` // the entity's version the timer belongs to
	State   string `json:"state"`
	Event   string `json:"event"`
	// Topic is where the event is published: the topic of the message
	// that set the timer, so it runs through the same flow.
	Topic string    `json:"topic"`
	Due   time.Time `json:"due"`
}

// ID is the timer's identity, the same in every process: the id of the
// message its event is published as, so a timer fired twice (a crash
// between publish and commit) runs once through the completion ledger.
func (t Timer) ID() string {
	return fmt.Sprintf("timer:%s:%s:%d:%s", t.Machine, t.Key, t.Version, t.Event)
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
	// that transition's outcome with applied false. Safe for concurrent
	// use; the transition is committed (with its timers) before Apply
	// returns, and concurrent calls' outcomes are independent.
	Apply(ctx context.Context, machine, key string, expect int64, t Transition) (e Entity, applied bool, err error)
	// ByInput returns the transition input caused for the entity, if any:
	// how a redelivered message learns it was applied already.
	ByInput(ctx context.Context, machine, key, input string) (Transition, bool, error)
	// History lists the entity's transitions, oldest first.
	History(ctx context.Context, machine, key string) ([]Transition, error)
	// List lists a machine's entities, in a state if state is not empty,
	// by key, at most limit (0: 100).
	List(ctx context.Context, machine, state string, limit int) ([]Entity, error)
	// FireDue claims up to limit of machine's timers due by now whose
	// entity is still at their version, calls fire with them, and marks
	// them fired when fire returns nil, all in one transaction: across
	// processes each timer goes to one fire call that succeeds (a fire
	// that fails leaves them due). Timers whose entity moved on are
	// dropped. It returns how many fired.
	FireDue(ctx context.Context, machine string, now time.Time, limit int, fire func(context.Context, []Timer) error) (int, error)
	// Timers lists the entity's timers, pending and fired, by due time;
	// fired reports which fired.
	Timers(ctx context.Context, machine, key string) (timers []Timer, fired []bool, err error)
	Close() error
}

// IsPostgresURL reports whether url names a PostgreSQL database.
func IsPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}
