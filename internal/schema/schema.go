// Package schema applies versioned schema migrations to a SQLite or
// PostgreSQL database. Each component (state, machines) numbers its
// migrations 1, 2, … in the order given; the schema_version table keeps,
// per component, the last one applied. Apply runs the missing ones in one
// transaction (on PostgreSQL under an advisory lock, so processes starting
// together migrate once), and refuses a database whose version is newer
// than the migrations it knows: an older binary must not write a schema it
// does not understand.
package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
)

// Migration is one step of a component's schema.
type Migration struct {
	Name string
	// Up applies it inside the migration's transaction.
	Up func(ctx context.Context, tx *sql.Tx) error
}

// SQL is a Migration running statements (separated by ";" as the driver
// allows: both SQLite and pgx's simple protocol run several at once).
func SQL(name, stmts string) Migration {
	return Migration{Name: name, Up: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, stmts)
		return err
	}}
}

// ErrNewer is returned when the database was migrated by a newer release.
var ErrNewer = errors.New("database schema is newer than this sluice knows")

// Apply brings component's schema up to date. postgres selects the
// placeholder style and the advisory lock.
func Apply(ctx context.Context, db *sql.DB, postgres bool, component string, migs []Migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s schema: %w", component, err)
	}
	defer tx.Rollback()
	if postgres {
		h := fnv.New64a()
		h.Write([]byte("sluice schema"))
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
			return fmt.Errorf("%s schema: lock: %w", component, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("%s schema: %w", component, err)
	}
	q := `SELECT version FROM schema_version WHERE component = ?`
	if postgres {
		q = `SELECT version FROM schema_version WHERE component = $1`
	}
	var have int
	switch err := tx.QueryRowContext(ctx, q, component).Scan(&have); {
	case errors.Is(err, sql.ErrNoRows):
		have = 0
	case err != nil:
		return fmt.Errorf("%s schema: %w", component, err)
	}
	if have > len(migs) {
		return fmt.Errorf("%s: %w: it is at version %d, this binary knows versions up to %d; upgrade sluice (or point it at another database)",
			component, ErrNewer, have, len(migs))
	}
	if have == len(migs) {
		return nil
	}
	for i := have; i < len(migs); i++ {
		if err := migs[i].Up(ctx, tx); err != nil {
			return fmt.Errorf("%s schema: migration %d (%s): %w", component, i+1, migs[i].Name, err)
		}
	}
	up := `INSERT INTO schema_version (component, version) VALUES (?, ?) ON CONFLICT (component) DO UPDATE SET version = excluded.version`
	if postgres {
		up = `INSERT INTO schema_version (component, version) VALUES ($1, $2) ON CONFLICT (component) DO UPDATE SET version = excluded.version`
	}
	if _, err := tx.ExecContext(ctx, up, component, len(migs)); err != nil {
		return fmt.Errorf("%s schema: %w", component, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s schema: %w", component, err)
	}
	return nil
}
