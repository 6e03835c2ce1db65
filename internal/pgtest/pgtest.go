// Package pgtest gives tests a PostgreSQL database of their own: a fresh
// schema on the server named by SLUICE_TEST_POSTGRES (started by
// scripts/services/postgres.sh), dropped when the test ends. Without the
// variable a test is skipped, or fails when CI=true.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the variable holding the test server's URL.
const Env = "SLUICE_TEST_POSTGRES"

var seq atomic.Int64

// Server returns the test server's URL, skipping (or failing under CI)
// when there is none.
func Server(t testing.TB) string {
	t.Helper()
	u := os.Getenv(Env)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: start PostgreSQL with scripts/services/postgres.sh (CI=true makes this a failure)", Env)
		}
		t.Skipf("%s is not set: start PostgreSQL with `eval \"$(scripts/services/postgres.sh start)\"` to run this test", Env)
	}
	return u
}

// URL creates an empty schema for the test and returns a URL whose
// connections use it (search_path); the schema is dropped at cleanup.
func URL(t testing.TB) string {
	t.Helper()
	base := Server(t)
	name := fmt.Sprintf("t_%d_%d_%s", os.Getpid(), seq.Add(1), strings.ToLower(sanitize(t.Name())))
	if len(name) > 60 {
		name = name[:60]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", Env, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE")
			c.Close(ctx)
		}
	})
	return WithSchema(t, base, name)
}

// WithSchema returns base with its connections' search_path set to schema.
func WithSchema(t testing.TB, base, schema string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", Env, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
