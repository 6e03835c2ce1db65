package state

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/schema"
)

// dialect is what differs between the SQLite and PostgreSQL backends: the
// schema, placeholders and a few expressions. Every other query is
// written once, with ? placeholders, in SQL both accept.
type dialect struct {
	name       string
	postgres   bool
	migrations []schema.Migration
	// day is the UTC day (2026-11-25) of a millisecond timestamp column.
	day func(col string) string
	// contains is "col contains ?" (a substring test).
	contains func(col string) string
}

// q rewrites ? placeholders for the dialect ($1, $2, … on PostgreSQL).
// Queries here carry no ? inside string literals.
func (d *dialect) q(query string) string {
	if !d.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var sqliteDialect = &dialect{
	name: "sqlite",
	migrations: []schema.Migration{
		{Name: "runs, seen objects, dead letters, completions", Up: func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, sqliteSchemaV1); err != nil {
				return err
			}
			return addLegacyColumns(ctx, tx)
		}},
		schema.SQL("runs' trace id and parent run", lineageColumns),
		schema.SQL("completions kept in the run records", completionsInRuns),
		schema.SQL("completions of unrecorded runs", unrecordedCompletions),
	},
	day:      func(col string) string { return `strftime('%Y-%m-%d', ` + col + ` / 1000, 'unixepoch')` },
	contains: func(col string) string { return `instr(` + col + `, ?) > 0` },
}

var postgresDialect = &dialect{
	name:     "postgres",
	postgres: true,
	migrations: []schema.Migration{
		schema.SQL("runs, seen objects, dead letters, completions", postgresSchemaV1),
		schema.SQL("runs' trace id and parent run", lineageColumns),
		schema.SQL("completions of unrecorded runs", `ALTER TABLE completions ADD COLUMN recorded BOOLEAN NOT NULL DEFAULT TRUE`),
	},
	day: func(col string) string {
		return `to_char(to_timestamp(` + col + ` / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')`
	},
	contains: func(col string) string { return `strpos(` + col + `, ?) > 0` },
}

// sqliteSchemaV1 is the schema as it stood before versioning, so a state
// file made by an earlier release is taken over as version 1.
const sqliteSchemaV1 = `
CREATE TABLE IF NOT EXISTS runs (
	id          TEXT PRIMARY KEY,
	flow        TEXT NOT NULL,
	trigger     TEXT NOT NULL,
	input       TEXT NOT NULL,
	attempts    INTEGER NOT NULL,
	status      TEXT NOT NULL,
	started_ms  INTEGER NOT NULL,
	duration_us INTEGER NOT NULL,
	step        TEXT NOT NULL DEFAULT '',
	error       TEXT NOT NULL DEFAULT '',
	steps       TEXT NOT NULL DEFAULT '[]',
	bytes_in    INTEGER NOT NULL DEFAULT 0,
	bytes_out   INTEGER NOT NULL DEFAULT 0,
	http_status INTEGER NOT NULL DEFAULT 0,
	response    BLOB,
	response_type TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_flow_started ON runs(flow, started_ms);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_ms);
CREATE INDEX IF NOT EXISTS runs_input ON runs(input);
CREATE TABLE IF NOT EXISTS seen_objects (
	bucket  TEXT NOT NULL,
	key     TEXT NOT NULL,
	etag    TEXT NOT NULL,
	seen_ms INTEGER NOT NULL,
	PRIMARY KEY (bucket, key, etag)
);
CREATE TABLE IF NOT EXISTS dead_letters (
	id           TEXT PRIMARY KEY,
	flow         TEXT NOT NULL,
	step         TEXT NOT NULL DEFAULT '',
	node         TEXT NOT NULL DEFAULT '',
	error        TEXT NOT NULL,
	attempts     INTEGER NOT NULL,
	failed_ms    INTEGER NOT NULL,
	source_topic TEXT NOT NULL,
	source_id    TEXT NOT NULL,
	topic        TEXT NOT NULL,
	payload      BLOB,
	metadata     TEXT NOT NULL DEFAULT '{}',
	replayed_ms  INTEGER,
	replay_id    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS dead_letters_flow ON dead_letters(flow, failed_ms);
CREATE TABLE IF NOT EXISTS completions (
	flow    TEXT NOT NULL,
	input   TEXT NOT NULL,
	run_id  TEXT NOT NULL,
	status  TEXT NOT NULL,
	done_ms INTEGER NOT NULL,
	PRIMARY KEY (flow, input)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS completions_done ON completions(done_ms);`

const postgresSchemaV1 = `
CREATE TABLE IF NOT EXISTS runs (
	id          TEXT PRIMARY KEY,
	flow        TEXT NOT NULL,
	trigger     TEXT NOT NULL,
	input       TEXT NOT NULL,
	attempts    INTEGER NOT NULL,
	status      TEXT NOT NULL,
	started_ms  BIGINT NOT NULL,
	duration_us BIGINT NOT NULL,
	step        TEXT NOT NULL DEFAULT '',
	error       TEXT NOT NULL DEFAULT '',
	steps       TEXT NOT NULL DEFAULT '[]',
	bytes_in    BIGINT NOT NULL DEFAULT 0,
	bytes_out   BIGINT NOT NULL DEFAULT 0,
	http_status INTEGER NOT NULL DEFAULT 0,
	response    BYTEA,
	response_type TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_flow_started ON runs(flow, started_ms);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_ms);
CREATE INDEX IF NOT EXISTS runs_input ON runs(input);
CREATE TABLE IF NOT EXISTS seen_objects (
	bucket  TEXT NOT NULL,
	key     TEXT NOT NULL,
	etag    TEXT NOT NULL,
	seen_ms BIGINT NOT NULL,
	PRIMARY KEY (bucket, key, etag)
);
CREATE TABLE IF NOT EXISTS dead_letters (
	id           TEXT PRIMARY KEY,
	flow         TEXT NOT NULL,
	step         TEXT NOT NULL DEFAULT '',
	node         TEXT NOT NULL DEFAULT '',
	error        TEXT NOT NULL,
	attempts     INTEGER NOT NULL,
	failed_ms    BIGINT NOT NULL,
	source_topic TEXT NOT NULL,
	source_id    TEXT NOT NULL,
	topic        TEXT NOT NULL,
	payload      BYTEA,
	metadata     TEXT NOT NULL DEFAULT '{}',
	replayed_ms  BIGINT,
	replay_id    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS dead_letters_flow ON dead_letters(flow, failed_ms);
CREATE TABLE IF NOT EXISTS completions (
	flow    TEXT NOT NULL,
	input   TEXT NOT NULL,
	run_id  TEXT NOT NULL,
	status  TEXT NOT NULL,
	done_ms BIGINT NOT NULL,
	PRIMARY KEY (flow, input)
);
CREATE INDEX IF NOT EXISTS completions_done ON completions(done_ms);`

// addLegacyColumns adds the columns of runs that releases before schema
// versioning added on the fly, to a file made before them.
func addLegacyColumns(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info('runs')`)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		have[n] = true
	}
	rows.Close()
	for _, c := range []struct{ col, def string }{
		{"bytes_in", "INTEGER NOT NULL DEFAULT 0"}, {"bytes_out", "INTEGER NOT NULL DEFAULT 0"},
		{"http_status", "INTEGER NOT NULL DEFAULT 0"}, {"response", "BLOB"}, {"response_type", "TEXT NOT NULL DEFAULT ''"},
	} {
		if !have[c.col] {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE runs ADD COLUMN `+c.col+` `+c.def); err != nil {
				return fmt.Errorf("add runs.%s: %w", c.col, err)
			}
		}
	}
	return nil
}

// lineageColumns is migration 2 of both dialects: each run's trace id and
// the run that made its input, indexed to follow lineage both ways.
const lineageColumns = `ALTER TABLE runs ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN parent_run TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run) WHERE parent_run <> '';
CREATE INDEX IF NOT EXISTS runs_trace ON runs(trace_id) WHERE trace_id <> ''`

// completionsInRuns is migration 3 of SQLite: the completion ledger is
// the run records themselves (a run that succeeded or was dead-lettered
// completed its input), written in the transaction that completes the
// input, so each input costs one row. A completion whose run record a
// crash lost (the two were written apart before) becomes a run record; an
// accepted record whose final one was lost takes the completion's status.
const completionsInRuns = `UPDATE runs SET status = c.status
	FROM completions c WHERE runs.id = c.run_id AND runs.status NOT IN ('succeeded', 'dead_lettered');
INSERT INTO runs (id, flow, trigger, input, attempts, status, started_ms, duration_us, error)
	SELECT c.run_id, c.flow, '', c.input, 1, c.status, c.done_ms, 0, 'run record lost in a crash; recreated from the completion ledger'
	FROM completions c WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = c.run_id)
	ON CONFLICT DO NOTHING;
DROP TABLE completions`

// unrecordedCompletions is migration 4 of SQLite: the completions of runs
// that leave no record (Run.NoRecord: flows with `record: failures`), one
// small row each, looked up with the run records. (PostgreSQL's migration
// 3 marks such completions in its completions table instead, so that
// RecoverRuns does not recreate their records.)
const unrecordedCompletions = `CREATE TABLE IF NOT EXISTS completions (
	flow    TEXT NOT NULL,
	input   TEXT NOT NULL,
	run_id  TEXT NOT NULL,
	status  TEXT NOT NULL,
	done_ms INTEGER NOT NULL,
	PRIMARY KEY (flow, input)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS completions_done ON completions(done_ms)`
