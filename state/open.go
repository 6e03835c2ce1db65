package state

import (
	"context"
	"fmt"
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
func OpenURL(ctx context.Context, url string) (*DB, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return OpenPostgres(ctx, url)
	case strings.HasPrefix(url, "sqlite://"):
		path := strings.TrimPrefix(url, "sqlite://")
		if path == "" {
			return nil, fmt.Errorf("state URL %q: no file path after sqlite://", url)
		}
		return Open(path)
	case strings.Contains(url, "://"):
		return nil, fmt.Errorf("state URL %q: want sqlite://PATH or postgres://…", Redact(url))
	}
	return Open(url)
}

// IsPostgres reports whether a state URL names PostgreSQL.
func IsPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// Redact returns url without its password, for messages and logs.
func Redact(url string) string {
	if cfg, err := pgx.ParseConfig(url); err == nil && cfg.Password != "" && IsPostgres(url) {
		return strings.Replace(url, ":"+cfg.Password+"@", ":xxxxx@", 1)
	}
	return url
}

// OpenPostgres opens the state database in PostgreSQL (pgx v5 through
// database/sql).
func OpenPostgres(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("state URL %s: %w", Redact(url), err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("state: connect to %s: %w", Redact(url), err)
	}
	return open(ctx, db, postgresDialect)
}
