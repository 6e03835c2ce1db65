package state

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// How the SQLite run writer binds rows. Each bound value is a call from Go
// into C, which costs about as much here as SQLite's own work on a column,
// so a run that only succeeded or failed (no HTTP answer, no failing step)
// binds only the columns that differ from their defaults, and rows go in
// statements of many rows.

// runColumnList is the runs table's columns, in the order appendRunArgs binds them.
const runColumnList = `id, flow, trigger, input, attempts, status, started_ms, duration_us, step, error, steps, bytes_in, bytes_out, http_status, response, response_type, trace_id, parent_run`

// plainColumnList is the columns a plain run binds; the others keep their
// defaults (”, 0, NULL).
const plainColumnList = `id, flow, trigger, input, attempts, status, started_ms, duration_us, steps, bytes_in, bytes_out`

var (
	runFields   = strings.Count(runColumnList, ",") + 1
	plainFields = strings.Count(plainColumnList, ",") + 1
	// runPlaceholders is one ? per runColumnList column.
	runPlaceholders = strings.Repeat("?,", runFields-1) + "?"
)

// runUpsert makes a repeated record of a run (an async HTTP run's final
// record after its accepted one) replace the earlier one.
const runUpsert = ` ON CONFLICT (id) DO UPDATE SET flow = excluded.flow, trigger = excluded.trigger,
		input = excluded.input, attempts = excluded.attempts, status = excluded.status, started_ms = excluded.started_ms,
		duration_us = excluded.duration_us, step = excluded.step, error = excluded.error, steps = excluded.steps,
		bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out, http_status = excluded.http_status,
		response = excluded.response, response_type = excluded.response_type,
		trace_id = excluded.trace_id, parent_run = excluded.parent_run`

// runChunks are the row counts of the multi-row run inserts, largest first.
var runChunks = []int{64, 8, 1}

// plain reports whether r binds only plainColumnList.
func plain(r *Run) bool {
	return r.Step == "" && r.Error == "" && r.HTTPStatus == 0 && r.Response == nil && r.ResponseType == "" &&
		r.TraceID == "" && r.Parent == ""
}

// runInserts are the SQLite run writer's prepared statements, by row kind
// (plain or not) and row count, prepared when first needed. Only the
// writer goroutine uses them.
type runInserts struct {
	db    *sql.DB
	stmts map[[2]int]*sql.Stmt
}

func (ri *runInserts) stmt(plainRows bool, rows int) (*sql.Stmt, error) {
	k := [2]int{0, rows}
	cols, n := runColumnList, runFields
	if plainRows {
		k[0], cols, n = 1, plainColumnList, plainFields
	}
	if st := ri.stmts[k]; st != nil {
		return st, nil
	}
	values := "(" + strings.Repeat("?,", n-1) + "?)"
	st, err := ri.db.Prepare(`INSERT INTO runs (` + cols + `) VALUES ` + values + strings.Repeat(","+values, rows-1) + runUpsert)
	if err != nil {
		return nil, fmt.Errorf("state: prepare run insert: %w", err)
	}
	if ri.stmts == nil {
		ri.stmts = map[[2]int]*sql.Stmt{}
	}
	ri.stmts[k] = st
	return st, nil
}

// completionFields is the columns of a completions row.
const completionFields = 5

// complete inserts the completions of runs without a record (all
// complete their inputs, none completed before) in tx, in as few
// statements as runChunks allow.
func (ri *runInserts) complete(tx *sql.Tx, runs []*Run) error {
	var args []any
	for len(runs) > 0 {
		n := chunk(len(runs))
		k := [2]int{2, n}
		st := ri.stmts[k]
		if st == nil {
			values := "(" + strings.Repeat("?,", completionFields-1) + "?)"
			var err error
			if st, err = ri.db.Prepare(`INSERT INTO completions (flow, input, run_id, status, done_ms) VALUES ` +
				values + strings.Repeat(","+values, n-1) + ` ON CONFLICT DO NOTHING`); err != nil {
				return fmt.Errorf("state: prepare completion insert: %w", err)
			}
			if ri.stmts == nil {
				ri.stmts = map[[2]int]*sql.Stmt{}
			}
			ri.stmts[k] = st
		}
		args = args[:0]
		for _, r := range runs[:n] {
			args = append(args, r.Flow, r.Input, r.ID, r.Status, r.Started.Add(r.Duration).UnixMilli())
		}
		// Through Query rather than Exec: go-sqlite3 binds a query's
		// values in one call into C, an Exec's one call per value.
		rows, err := tx.Stmt(st).Query(args...)
		if err != nil {
			return err
		}
		if err := rows.Close(); err != nil {
			return err
		}
		runs = runs[n:]
	}
	return nil
}

// chunk is the largest of runChunks not over n.
func chunk(n int) int {
	for _, c := range runChunks {
		if c <= n {
			return c
		}
	}
	return 1
}

// write inserts rows (all plain or none) in tx, in order, in as few
// statements as runChunks allow.
func (ri *runInserts) write(tx *sql.Tx, rows []*Run, plainRows bool, args []any) ([]any, error) {
	for len(rows) > 0 {
		n := chunk(len(rows))
		st, err := ri.stmt(plainRows, n)
		if err != nil {
			return args, err
		}
		args = args[:0]
		for _, r := range rows[:n] {
			args = appendRunArgs(args, r, plainRows)
		}
		// Through Query, as complete: its values bound in one call into C.
		rs, err := tx.Stmt(st).Query(args...)
		if err != nil {
			return args, err
		}
		if err := rs.Close(); err != nil {
			return args, err
		}
		rows = rows[n:]
	}
	return args, nil
}

func appendRunArgs(args []any, r *Run, plainRow bool) []any {
	// One allocation, sized for a typical step, and no copy into a
	// string: the bytes are never written again.
	b := appendSteps(make([]byte, 0, 2+stepJSONSize*len(r.Steps)), r.Steps)
	steps := unsafe.String(unsafe.SliceData(b), len(b))
	if plainRow {
		return append(args, r.ID, r.Flow, r.Trigger, r.Input, r.Attempts, r.Status, r.Started.UnixMilli(),
			r.Duration.Microseconds(), steps, r.BytesIn, r.BytesOut)
	}
	return append(args, r.ID, r.Flow, r.Trigger, r.Input, r.Attempts, r.Status, r.Started.UnixMilli(),
		r.Duration.Microseconds(), r.Step, r.Error, steps, r.BytesIn, r.BytesOut, r.HTTPStatus, r.Response, r.ResponseType,
		r.TraceID, r.Parent)
}

// stepJSONSize is room for one step's JSON without a failure, list or log.
const stepJSONSize = 112

// appendSteps appends steps as JSON, as encoding/json would write them
// (json.Marshal's reflection was a sixth of the run writer's time).
func appendSteps(b []byte, steps []StepRun) []byte {
	if steps == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range steps {
		s := &steps[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendJSONString(b, s.ID)
		b = append(b, `,"node":`...)
		b = appendJSONString(b, s.Node)
		b = append(b, `,"status":`...)
		b = appendJSONString(b, s.Status)
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(s.Attempts), 10)
		b = append(b, `,"duration_ns":`...)
		b = strconv.AppendInt(b, int64(s.Duration), 10)
		if s.Error != "" {
			b = append(b, `,"error":`...)
			b = appendJSONString(b, s.Error)
		}
		if s.Output != "" {
			b = append(b, `,"output":`...)
			b = appendJSONString(b, s.Output)
		}
		b = appendStringList(b, `,"wrote":`, s.Wrote)
		b = appendStringList(b, `,"published":`, s.Published)
		if len(s.Calls) > 0 {
			calls, _ := json.Marshal(s.Calls)
			b = append(b, `,"calls":`...)
			b = append(b, calls...)
		}
		if s.Log != "" {
			b = append(b, `,"log":`...)
			b = appendJSONString(b, s.Log)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendStringList appends field and list as a JSON array of strings,
// nothing for an empty list (omitempty).
func appendStringList(b []byte, field string, list []string) []byte {
	if len(list) == 0 {
		return b
	}
	b = append(b, field...)
	b = append(b, '[')
	for i, v := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string: plain ASCII (ids, names,
// statuses) as it is, anything else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
