package machines

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sluicehq/sluice/internal/schema"
)

var postgresMigrations = []schema.Migration{
	schema.SQL("entities and transitions", `
CREATE TABLE entities (
	machine    TEXT NOT NULL,
	key        TEXT NOT NULL,
	state      TEXT NOT NULL,
	version    BIGINT NOT NULL,
	updated_ms BIGINT NOT NULL,
	PRIMARY KEY (machine, key)
);
CREATE INDEX entities_state ON entities(machine, state, key);
CREATE TABLE transitions (
	machine    TEXT NOT NULL,
	key        TEXT NOT NULL,
	version    BIGINT NOT NULL,
	event      TEXT NOT NULL,
	from_state TEXT NOT NULL,
	to_state   TEXT NOT NULL,
	input      TEXT NOT NULL,
	at_ms      BIGINT NOT NULL,
	PRIMARY KEY (machine, key, version)
);
CREATE UNIQUE INDEX transitions_input ON transitions(machine, key, input) WHERE input != '';`),
	schema.SQL("timers", `
CREATE TABLE timers (
	machine TEXT NOT NULL,
	key     TEXT NOT NULL,
	version BIGINT NOT NULL,
	event   TEXT NOT NULL,
	state   TEXT NOT NULL,
	topic   TEXT NOT NULL DEFAULT '',
	due_ms  BIGINT NOT NULL,
	status  TEXT NOT NULL DEFAULT 'pending',
	done_ms BIGINT,
	PRIMARY KEY (machine, key, version, event)
);
CREATE INDEX timers_due ON timers(machine, due_ms) WHERE status = 'pending';`),
}

// Postgres is a Store in PostgreSQL, shared by every process using the
// same database. Transitions applied concurrently are committed together
// (group commit, see Apply): a durable commit costs a WAL flush, and one
// flush then serves many transitions.
type Postgres struct {
	pool *pgxpool.Pool
	db   *sql.DB // over pool: the queries shared with SQLite
	group
}

// OpenPostgres connects to the database at url (pgx v5) and migrates the
// store's schema.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("machines: database URL: %w", err)
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		// The group commit's statement (pgApplyGroup) takes arrays: the
		// planner, knowing their lengths, keeps planning it anew for each
		// group (~0.7 ms, as long as running it); its generic plan probes
		// the indexes the same way. The store's other queries are lookups
		// by key, as well served by generic plans.
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("machines: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("machines: connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	s := &Postgres{pool: pool, db: stdlib.OpenDBFromPool(pool)}
	if err := schema.Apply(ctx, s.db, true, "machines", postgresMigrations); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Postgres) Close() error {
	err := s.db.Close()
	s.pool.Close()
	return err
}

func (s *Postgres) Get(ctx context.Context, machine, key string) (Entity, error) {
	e := Entity{Machine: machine, Key: key}
	var ms int64
	err := s.pool.QueryRow(ctx, `SELECT state, version, updated_ms FROM entities WHERE machine = $1 AND key = $2`, machine, key).
		Scan(&e.State, &e.Version, &ms)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, err
	}
	e.Updated = time.UnixMilli(ms).UTC()
	return e, nil
}

// failed maps a failed transition: a unique violation is a repeated input
// (or a lost race to create the entity).
func (s *Postgres) failed(ctx context.Context, machine, key, input string, err error) (Entity, bool, error) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return s.repeatOr(ctx, machine, key, input, ErrConflict)
	}
	return Entity{}, false, err
}

func (s *Postgres) repeatOr(ctx context.Context, machine, key, input string, err error) (Entity, bool, error) {
	if input != "" {
		if _, ok, ierr := s.ByInput(ctx, machine, key, input); ierr == nil && ok {
			e, gerr := s.Get(ctx, machine, key)
			return e, false, gerr
		}
	}
	return Entity{}, false, err
}

func (s *Postgres) ByInput(ctx context.Context, machine, key, input string) (Transition, bool, error) {
	var t Transition
	var ms int64
	err := s.pool.QueryRow(ctx, `SELECT version, event, from_state, to_state, input, at_ms FROM transitions WHERE machine = $1 AND key = $2 AND input = $3`,
		machine, key, input).Scan(&t.Version, &t.Event, &t.From, &t.To, &t.Input, &ms)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, err
	}
	t.At = time.UnixMilli(ms).UTC()
	return t, true, nil
}

func (s *Postgres) History(ctx context.Context, machine, key string) ([]Transition, error) {
	rows, err := s.pool.Query(ctx, `SELECT version, event, from_state, to_state, input, at_ms FROM transitions
		WHERE machine = $1 AND key = $2 ORDER BY version`, machine, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		var t Transition
		var ms int64
		if err := rows.Scan(&t.Version, &t.Event, &t.From, &t.To, &t.Input, &ms); err != nil {
			return nil, err
		}
		t.At = time.UnixMilli(ms).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *Postgres) List(ctx context.Context, machine, state string, limit int) ([]Entity, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT key, state, version, updated_ms FROM entities
		WHERE machine = $1 AND ($2 = '' OR state = $2) ORDER BY key LIMIT $3`, machine, state, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entity
	for rows.Next() {
		e := Entity{Machine: machine}
		var ms int64
		if err := rows.Scan(&e.Key, &e.State, &e.Version, &ms); err != nil {
			return nil, err
		}
		e.Updated = time.UnixMilli(ms).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// FireDue claims due timers with SELECT … FOR UPDATE SKIP LOCKED: each
// process polling at once takes different timers, and a timer stays
// locked until its claimer commits it fired (or dies, and its transaction
// with it).
func (s *Postgres) FireDue(ctx context.Context, machine string, now time.Time, limit int, fire func(context.Context, []Timer) error) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT t.key, t.version, t.event, t.state, t.topic, t.due_ms, e.version IS NOT NULL AND e.version = t.version
		FROM timers t LEFT JOIN entities e ON e.machine = t.machine AND e.key = t.key
		WHERE t.machine = $1 AND t.status = 'pending' AND t.due_ms <= $2 ORDER BY t.due_ms LIMIT $3
		FOR UPDATE OF t SKIP LOCKED`, machine, now.UnixMilli(), limit)
	if err != nil {
		return 0, err
	}
	due, stale, err := scanDue(rows, machine)
	if err != nil {
		return 0, err
	}
	return finishDue(ctx, tx, true, now, due, stale, fire)
}

func (s *Postgres) Timers(ctx context.Context, machine, key string) ([]Timer, []bool, error) {
	return listTimers(ctx, s.db, true, machine, key)
}

var _ Store = (*Postgres)(nil)

// DB is the store's database (for tests and tools).
func (s *Postgres) DB() *sql.DB { return s.db }

// Lookup reads the entity and the transition input caused for it (if
// any) in one round trip: what state.transition asks before deciding.
// A never-seen entity is ErrNotFound, with the transition still reported.
func (s *Postgres) Lookup(ctx context.Context, machine, key, input string) (Entity, *Transition, error) {
	e := Entity{Machine: machine, Key: key}
	var state *string
	var ver, ms, tver, tms *int64
	var tev, tfrom, tto *string
	err := s.pool.QueryRow(ctx, `SELECT e.state, e.version, e.updated_ms, t.version, t.event, t.from_state, t.to_state, t.at_ms
		FROM (SELECT 1) one
		LEFT JOIN entities e ON e.machine = $1 AND e.key = $2
		LEFT JOIN transitions t ON t.machine = $1 AND t.key = $2 AND t.input = $3 AND $3 <> ''`, machine, key, input).
		Scan(&state, &ver, &ms, &tver, &tev, &tfrom, &tto, &tms)
	if err != nil {
		return e, nil, err
	}
	var tr *Transition
	if tver != nil {
		tr = &Transition{Version: *tver, Event: *tev, From: *tfrom, To: *tto, Input: input, At: time.UnixMilli(*tms).UTC()}
	}
	if state == nil {
		return e, tr, ErrNotFound
	}
	e.State, e.Version, e.Updated = *state, *ver, time.UnixMilli(*ms).UTC()
	return e, tr, nil
}

// Looker is implemented by stores that read an entity and the transition
// an input caused for it in one round trip.
type Looker interface {
	Lookup(ctx context.Context, machine, key, input string) (Entity, *Transition, error)
}

var _ Looker = (*Postgres)(nil)
