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
// same database. A transition is one statement (the entity's row moves
// from the expected version and the transition row is inserted together,
// committed in one round trip); with timers, one transaction.
type Postgres struct {
	pool *pgxpool.Pool
	db   *sql.DB // over pool: the queries shared with SQLite
}

// Applying a transition: the entity's row moves (or is created) only at
// the expected version, and the transition row follows from it; the
// unique input index fails the statement for a repeated input.
const (
	pgApplyNew = `WITH e AS (
		INSERT INTO entities (machine, key, state, version, updated_ms) VALUES ($1::text, $2::text, $3::text, 1, $4::bigint)
		ON CONFLICT DO NOTHING RETURNING version)
	INSERT INTO transitions (machine, key, version, event, from_state, to_state, input, at_ms)
	SELECT $1::text, $2::text, e.version, $5::text, $6::text, $3::text, $7::text, $4::bigint FROM e`
	pgApplyNext = `WITH e AS (
		UPDATE entities SET state = $3::text, version = version + 1, updated_ms = $4::bigint
		WHERE machine = $1::text AND key = $2::text AND version = $8::bigint RETURNING version)
	INSERT INTO transitions (machine, key, version, event, from_state, to_state, input, at_ms)
	SELECT $1::text, $2::text, e.version, $5::text, $6::text, $3::text, $7::text, $4::bigint FROM e`
)

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

func (s *Postgres) Apply(ctx context.Context, machine, key string, expect int64, t Transition) (Entity, bool, error) {
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	q, args := pgApplyNext, []any{machine, key, t.To, at.UnixMilli(), t.Event, t.From, t.Input, expect}
	if expect == 0 {
		q, args = pgApplyNew, args[:7]
	}
	var n int64
	if len(t.Timers) == 0 {
		tag, err := s.pool.Exec(ctx, q, args...)
		if err != nil {
			return s.failed(ctx, machine, key, t.Input, err)
		}
		n = tag.RowsAffected()
	} else {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, q, args...)
			if err != nil {
				return err
			}
			if n = tag.RowsAffected(); n == 0 {
				return nil
			}
			for _, tm := range t.Timers {
				if _, err := tx.Exec(ctx, `INSERT INTO timers (machine, key, version, event, state, topic, due_ms) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`,
					machine, key, expect+1, tm.Event, t.To, tm.Topic, tm.Due.UnixMilli()); err != nil {
					return fmt.Errorf("set timer %s: %w", tm.Event, err)
				}
			}
			return nil
		})
		if err != nil {
			return s.failed(ctx, machine, key, t.Input, err)
		}
	}
	if n == 0 {
		return s.repeatOr(ctx, machine, key, t.Input, ErrConflict)
	}
	return Entity{Machine: machine, Key: key, State: t.To, Version: expect + 1, Updated: time.UnixMilli(at.UnixMilli()).UTC()}, true, nil
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
