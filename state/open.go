package state

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// OpenURL opens the state database a URL names:
//
//	sqlite://PATH          a SQLite file (one process; the default)
//	postgres://USER@HOST/DB?…  (or postgresql://) a PostgreSQL database
//	                       shared by every process of a deployment
//
// A bare path is a SQLite file. The schema is migrated at open; a database
// migrated by a newer release is refused (schema.ErrNewer).
func OpenURL(ctx context.Context, stateURL string) (*DB, error) {
	switch {
	case IsPostgres(stateURL):
		return OpenPostgres(ctx, stateURL)
	case strings.HasPrefix(stateURL, "sqlite://"):
		path := strings.TrimPrefix(stateURL, "sqlite://")
		if path == "" {
			return nil, fmt.Errorf("state URL %q: no file path after sqlite://", stateURL)
		}
		return Open(path)
	case strings.Contains(stateURL, "://"):
		return nil, fmt.Errorf("state URL %q: want sqlite://PATH or postgres://…", Redact(stateURL))
	}
	return Open(stateURL)
}

// IsPostgres reports whether a state URL names PostgreSQL.
func IsPostgres(stateURL string) bool {
	return strings.HasPrefix(stateURL, "postgres://") || strings.HasPrefix(stateURL, "postgresql://")
}

// Redact returns url without its password, for messages and logs.
func Redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		return u.Redacted()
	}
	return rawURL
}

// OpenPostgres opens the state database in PostgreSQL (pgx v5 through
// database/sql).
func OpenPostgres(ctx context.Context, stateURL string) (*DB, error) {
	cfg, err := pgx.ParseConfig(stateURL)
	if err != nil {
		return nil, fmt.Errorf("state URL %s: %w", Redact(stateURL), err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("state: connect to %s: %w", Redact(stateURL), err)
	}
	return open(ctx, db, postgresDialect)
}
