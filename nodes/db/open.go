package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sluicehq/sluice/internal/sqlitedb"
)

// target is the database a node's database: field names: a SQLite file
// (relative paths inside the Sluice home) or a postgres:// URL.
type target struct {
	path     string // the file, or the URL
	postgres bool
}

func resolveTarget(database, home string) target {
	if strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://") {
		return target{path: database, postgres: true}
	}
	database = strings.TrimPrefix(database, "sqlite://")
	if !filepath.IsAbs(database) {
		database = filepath.Join(home, database)
	}
	return target{path: database}
}

// String names the database without a password.
func (t target) String() string {
	if !t.postgres {
		return t.path
	}
	if cfg, err := pgx.ParseConfig(t.path); err == nil {
		return fmt.Sprintf("postgres://%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	}
	return "postgres://…"
}

// open connects. PostgreSQL connections use pgx's simple protocol: values
// are still never spliced into SQL by us (pgx quotes them as literals),
// and the server types them by their column, as SQLite's loose typing
// does, so a number lands in a TEXT column and a string in an INTEGER one.
func (t target) open(ctx context.Context) (*sql.DB, error) {
	if !t.postgres {
		return sqlitedb.OpenTimeout(t.path, sqlitedb.SyncNormal, sqlitedb.ShortBusy) // busy waits in Go, bounded by the context
	}
	cfg, err := pgx.ParseConfig(t.path)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(8)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s: %w", t, err)
	}
	return db, nil
}

// rebind turns ? placeholders into $1, $2, … for PostgreSQL.
func (t target) rebind(q string) string {
	if !t.postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isUnique reports a unique-constraint violation on either backend.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}
