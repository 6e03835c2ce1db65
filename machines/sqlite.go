package machines

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/sluicehq/sluice/internal/dbident"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/internal/sqlitedb"
)

// sqliteMigrations are the SQLite store's schema versions; the first is
// the schema as it stood before versioning.
var sqliteMigrations = []schema.Migration{
	schema.SQL("entities and transitions", sqliteSchemaV1),
	schema.SQL("timers", `
CREATE TABLE timers (
	machine TEXT NOT NULL,
	key     TEXT NOT NULL,
	version INTEGER NOT NULL,
	event   TEXT NOT NULL,
	state   TEXT NOT NULL,
	topic   TEXT NOT NULL DEFAULT '',
	due_ms  INTEGER NOT NULL,
	status  TEXT NOT NULL DEFAULT 'pending',
	done_ms INTEGER,
	PRIMARY KEY (machine, key, version, event)
) WITHOUT ROWID;
CREATE INDEX timers_due ON timers(machine, due_ms) WHERE status = 'pending';`),
}

const sqliteSchemaV1 = `
CREATE TABLE IF NOT EXISTS entities (
	machine    TEXT NOT NULL,
	key        TEXT NOT NULL,
	state      TEXT NOT NULL,
	version    INTEGER NOT NULL,
	updated_ms INTEGER NOT NULL,
	PRIMARY KEY (machine, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entities_state ON entities(machine, state, key);
CREATE TABLE IF NOT EXISTS transitions (
	machine TEXT NOT NULL,
	key     TEXT NOT NULL,
	version INTEGER NOT NULL,
	event   TEXT NOT NULL,
	from_state TEXT NOT NULL,
	to_state   TEXT NOT NULL,
	input   TEXT NOT NULL,
	at_ms   INTEGER NOT NULL,
	PRIMARY KEY (machine, key, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS transitions_input ON transitions(machine, key, input) WHERE input != '';`

// SQLite is a Store in a SQLite file.
type SQLite struct {
	db *sql.DB
	// Prepared once: preparing costs about as much as running them.
	get, byInput, insertEntity, updateEntity, insertTransition, insertTimer *sql.Stmt
}

// OpenSQLite opens (creating) the store at path.
func OpenSQLite(path string) (*SQLite, error) {
	db, err := sqlitedb.Open(path, sqlitedb.SyncNormal)
	if err != nil {
		return nil, err
	}
	if err := dbident.Check(context.Background(), db, path, "state machine entities and transitions"); err != nil {
		db.Close()
		return nil, err
	}
	if err := schema.Apply(context.Background(), db, false, "machines", sqliteMigrations); err != nil {
		db.Close()
		return nil, err
	}
	s := &SQLite{db: db}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&s.get, `SELECT state, version, updated_ms FROM entities WHERE machine = ? AND key = ?`},
		{&s.byInput, `SELECT version, event, from_state, to_state, input, at_ms FROM transitions WHERE machine = ? AND key = ? AND input = ?`},
		{&s.insertEntity, `INSERT OR IGNORE INTO entities (machine, key, state, version, updated_ms) VALUES (?, ?, ?, 1, ?)`},
		{&s.updateEntity, `UPDATE entities SET state = ?, version = ?, updated_ms = ? WHERE machine = ? AND key = ? AND version = ?`},
		{&s.insertTransition, `INSERT INTO transitions (machine, key, version, event, from_state, to_state, input, at_ms) VALUES (?,?,?,?,?,?,?,?)`},
		{&s.insertTimer, `INSERT INTO timers (machine, key, version, event, state, topic, due_ms) VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`},
	} {
		if *p.st, err = db.Prepare(p.sql); err != nil {
			db.Close()
			return nil, fmt.Errorf("machines: %w", err)
		}
	}
	return s, nil
}

func (s *SQLite) Close() error { return s.db.Close() }

func (s *SQLite) Get(ctx context.Context, machine, key string) (Entity, error) {
	return get(ctx, s.get, machine, key)
}

func get(ctx context.Context, st *sql.Stmt, machine, key string) (Entity, error) {
	e := Entity{Machine: machine, Key: key}
	var ms int64
	err := st.QueryRowContext(ctx, machine, key).Scan(&e.State, &e.Version, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, err
	}
	e.Updated = time.UnixMilli(ms).UTC()
	return e, nil
}

func (s *SQLite) Apply(ctx context.Context, machine, key string, expect int64, t Transition) (Entity, bool, error) {
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see sqlitedb)
	if err != nil {
		return Entity{}, false, err
	}
	defer tx.Rollback()
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	next := expect + 1
	var res sql.Result
	if expect == 0 {
		res, err = tx.StmtContext(ctx, s.insertEntity).ExecContext(ctx, machine, key, t.To, at.UnixMilli())
	} else {
		res, err = tx.StmtContext(ctx, s.updateEntity).ExecContext(ctx, t.To, next, at.UnixMilli(), machine, key, expect)
	}
	if err != nil {
		return Entity{}, false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return s.repeatOr(ctx, machine, key, t.Input, ErrConflict)
	}
	if _, err := tx.StmtContext(ctx, s.insertTransition).ExecContext(ctx, machine, key, next, t.Event, t.From, t.To, t.Input, at.UnixMilli()); err != nil {
		if isUnique(err) {
			// This input applied already (the unique input index): undo.
			tx.Rollback()
			return s.repeatOr(ctx, machine, key, t.Input, err)
		}
		return Entity{}, false, err
	}
	for _, tm := range t.Timers {
		if _, err := tx.StmtContext(ctx, s.insertTimer).ExecContext(ctx, machine, key, next, tm.Event, t.To, tm.Topic, tm.Due.UnixMilli()); err != nil {
			return Entity{}, false, fmt.Errorf("set timer %s: %w", tm.Event, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Entity{}, false, err
	}
	return Entity{Machine: machine, Key: key, State: t.To, Version: next, Updated: time.UnixMilli(at.UnixMilli()).UTC()}, true, nil
}

// repeatOr reports the entity unchanged when input already caused one of
// its transitions (a redelivered message), else err.
func (s *SQLite) repeatOr(ctx context.Context, machine, key, input string, err error) (Entity, bool, error) {
	if input != "" {
		if _, ok, ierr := s.ByInput(ctx, machine, key, input); ierr == nil && ok {
			e, gerr := s.Get(ctx, machine, key)
			return e, false, gerr
		}
	}
	return Entity{}, false, err
}

func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique
}

func (s *SQLite) ByInput(ctx context.Context, machine, key, input string) (Transition, bool, error) {
	var t Transition
	var ms int64
	err := s.byInput.QueryRowContext(ctx, machine, key, input).Scan(&t.Version, &t.Event, &t.From, &t.To, &t.Input, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, err
	}
	t.At = time.UnixMilli(ms).UTC()
	return t, true, nil
}

func (s *SQLite) History(ctx context.Context, machine, key string) ([]Transition, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version, event, from_state, to_state, input, at_ms FROM transitions
		WHERE machine = ? AND key = ? ORDER BY version`, machine, key)
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

func (s *SQLite) List(ctx context.Context, machine, state string, limit int) ([]Entity, error) {
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT key, state, version, updated_ms FROM entities WHERE machine = ?`
	args := []any{machine}
	if state != "" {
		q += ` AND state = ?`
		args = append(args, state)
	}
	q += ` ORDER BY key LIMIT ?`
	rows, err := s.db.QueryContext(ctx, q, append(args, limit)...)
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

// FireDue claims due timers inside one BEGIN IMMEDIATE transaction: the
// file's write lock makes the claim exclusive.
func (s *SQLite) FireDue(ctx context.Context, machine string, now time.Time, limit int, fire func(context.Context, []Timer) error) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT t.key, t.version, t.event, t.state, t.topic, t.due_ms, e.version IS NOT NULL AND e.version = t.version
		FROM timers t LEFT JOIN entities e ON e.machine = t.machine AND e.key = t.key
		WHERE t.machine = ? AND t.status = 'pending' AND t.due_ms <= ? ORDER BY t.due_ms LIMIT ?`, machine, now.UnixMilli(), limit)
	if err != nil {
		return 0, err
	}
	due, stale, err := scanDue(rows, machine)
	if err != nil {
		return 0, err
	}
	return finishDue(ctx, tx, false, now, due, stale, fire)
}

func (s *SQLite) Timers(ctx context.Context, machine, key string) ([]Timer, []bool, error) {
	return listTimers(ctx, s.db, false, machine, key)
}

var _ Store = (*SQLite)(nil)
