package flowtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	_ "image/gif"  // image dimensions of written objects
	_ "image/jpeg" // (decoders register themselves)
	_ "image/png"

	"go.yaml.in/yaml/v3"

	"github.com/ThreeDotsLabs/watermill/message"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/internal/sqlitedb"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// outcome is what a case's input led to, for its expectations.
type outcome struct {
	ctx      context.Context
	end      *flows.RunEnd // the input's run; nil when none ran (a refused request)
	resp     *response     // the answer to a request input
	store    *storage.Store
	stateDir string
	// published returns the messages published to a topic since the
	// case's input was handed over (its before inputs' excluded).
	published func(topic string) []*message.Message
}

type response struct {
	status int
	header http.Header
	body   []byte
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var objectExpectFields = []nodes.Field{
	{Name: "exists", Kind: nodes.Bool, Default: true},
	{Name: "size", Kind: nodes.Int, Min: 0, Max: 1 << 50},
	{Name: "width", Kind: nodes.Int, Min: 0, Max: 1 << 20, Doc: "Image width in pixels."},
	{Name: "height", Kind: nodes.Int, Min: 0, Max: 1 << 20, Doc: "Image height in pixels."},
	{Name: "content_type", Kind: nodes.String},
	{Name: "json", Kind: nodes.Any, Doc: "JSON subset of the object's content."},
	{Name: "lines", Kind: nodes.Int, Min: 0, Max: 1 << 40, Doc: "Lines of text in the object (gzip content is read uncompressed)."},
	{Name: "contains", Kind: nodes.StringList, Doc: "Texts the object's content contains (gzip content is read uncompressed)."},
}

// parseExpectations reads a case's expectations; each keeps the position
// it was written at, so a failure points there.
func (f *File) parseExpectations(where string, tc *Case, probs *nodes.Problems) []expectation {
	c, n, file := tc.cfg, tc.node, f.Path
	var ex []expectation
	add := func(pos nodes.Pos, what string, check func(*outcome) []Failure) {
		ex = append(ex, expectation{pos: pos, what: what, check: check})
	}
	fail := func(pos nodes.Pos, format string, args ...any) []Failure {
		return []Failure{{Pos: pos, Msg: fmt.Sprintf(format, args...)}}
	}

	// The run's status: as written, else dead-lettered when a dead letter
	// is expected, else succeeded (unless only a response is checked).
	status, statusPos := c.String(fStatus), c.Pos(fStatus)
	if status == "" && c.Has(fDeadLetter) {
		status, statusPos = StatusDeadLettered, c.Pos(fDeadLetter)
	}
	if status == "" && !c.Has(fResponse) {
		status, statusPos = StatusSucceeded, tc.Pos
	}
	if status != "" {
		add(statusPos, "status", func(o *outcome) []Failure {
			if o.end == nil {
				if o.resp != nil {
					return fail(statusPos, "no run: the request was answered %d %s", o.resp.status, bytes.TrimSpace(o.resp.body))
				}
				return fail(statusPos, "no run")
			}
			got := o.end.Run.Status
			if got != status {
				msg := fmt.Sprintf("run %s: got %s, want %s", o.end.Run.ID, got, status)
				if o.end.Run.Step != "" {
					msg = fmt.Sprintf("run %s: got %s at step %s, want %s", o.end.Run.ID, got, o.end.Run.Step, status)
				}
				if o.end.Run.Error != "" {
					msg += "\n" + indent("error: "+o.end.Run.Error)
				}
				return fail(statusPos, "%s", msg)
			}
			return nil
		})
	}
	if c.Has(fDeadLetter) {
		pos := c.Pos(fDeadLetter)
		re, err := regexp.Compile(c.String(fDeadLetter))
		if err != nil {
			probs.Add(pos, "%s: dead_letter: %v", where, err)
		} else {
			add(pos, "dead_letter", func(o *outcome) []Failure {
				if o.end == nil || o.end.Run.Status != StatusDeadLettered {
					return nil // the status check says it
				}
				if !re.MatchString(o.end.Run.Error) {
					return fail(pos, "dead letter's error %q does not match %q", o.end.Run.Error, re.String())
				}
				return nil
			})
		}
	}
	for _, k := range []string{fPayload, fPayloadSubset} {
		if !c.Has(k) {
			continue
		}
		want, subset, vn := c.Any(k), k == fPayloadSubset, child(n, k)
		add(c.Pos(k), k, func(o *outcome) []Failure {
			if o.end == nil {
				return fail(c.Pos(k), "%s: no run", k)
			}
			return mismatches(file, vn, "payload", compare(want, o.end.Vars.Payload, subset))
		})
	}
	if c.Has(fExpect) {
		items := child(n, fExpect)
		for i, src := range c.Strings(fExpect) {
			pos := at(file, items, i)
			p, err := compileExpect(src)
			if err != nil {
				probs.Add(pos, "%s: expect[%d]: %v", where, i, err)
				continue
			}
			add(pos, "expect", func(o *outcome) []Failure {
				if o.end == nil {
					return fail(pos, "expect %s: no run", src)
				}
				e := o.end
				vars := e.Vars
				vars.Payload, vars.Steps = normalizeJSON(vars.Payload), normalizeJSON(vars.Steps)
				ok, err := p.BoolContext(o.ctx, vars)
				if err != nil {
					return fail(pos, "expect %s: %v", src, err)
				}
				if !ok {
					return fail(pos, "expect %s: false (payload %s)", src, show(e.Vars.Payload))
				}
				return nil
			})
		}
	}
	for _, e := range c.Map(fPublished) {
		ex = append(ex, f.publishedExpectation(where, e, child(child(n, fPublished), e.Key), probs))
	}
	objs := child(n, fObjects)
	for _, e := range c.Map(fObjects) {
		ex = append(ex, f.objectExpectations(where, e, child(objs, e.Key), probs)...)
	}
	rows := child(n, fRows)
	for _, e := range c.Map(fRows) {
		ex = append(ex, f.rowsExpectation(where, e, child(rows, e.Key), probs))
	}
	ms := child(n, fMachines)
	for _, e := range c.Map(fMachines) {
		ex = append(ex, f.machineExpectations(where, e, child(ms, e.Key), probs)...)
	}
	if r := c.Object(fResponse); r != nil {
		ex = append(ex, f.responseExpectations(r, child(n, fResponse))...)
	}
	return ex
}

// mismatches turns compare's mismatches into failures at the expected
// value's positions.
func mismatches(file string, n *yaml.Node, root string, ms []mismatch) []Failure {
	var out []Failure
	for _, m := range ms {
		out = append(out, Failure{Pos: at(file, n, m.path...), Msg: pathString(root, m.path) + ": " + m.msg})
	}
	return out
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// publishedExpectation: topic: N (a count) or topic: [payload subsets].
func (f *File) publishedExpectation(where string, e nodes.MapEntry, n *yaml.Node, probs *nodes.Problems) expectation {
	topic, pos := e.Key, e.Pos
	count := -1
	var items []any
	switch v := e.Value.(type) {
	case float64:
		count = int(v)
	case []any:
		items, count = v, len(v)
	default:
		probs.Add(pos, "%s: published: %s: want a count or a list of payload subsets", where, topic)
	}
	return expectation{pos: pos, what: "published", check: func(o *outcome) []Failure {
		var got []any
		for _, m := range o.published(topic) {
			got = append(got, decodeJSON(m.Payload))
		}
		if len(got) != count {
			msg := fmt.Sprintf("published %s: got %d messages, want %d", topic, len(got), count)
			if len(got) > 0 {
				msg = fmt.Sprintf("published %s: got %d messages %s, want %d", topic, len(got), show(got), count)
			}
			return []Failure{{Pos: pos, Msg: msg}}
		}
		var out []Failure
		for i, want := range items {
			out = append(out, mismatches(f.Path, nodeAt(n, i), fmt.Sprintf("published %s[%d]", topic, i), compare(want, got[i], true))...)
		}
		return out
	}}
}

func (f *File) objectExpectations(where string, e nodes.MapEntry, n *yaml.Node, probs *nodes.Problems) []expectation {
	bucket, key, ok := strings.Cut(e.Key, "/")
	if !ok || bucket == "" || key == "" {
		probs.Add(e.Pos, "%s: objects: %q: want bucket/key", where, e.Key)
		return nil
	}
	c, ps := nodes.Decode(f.Path, where+": objects: "+e.Key, objectExpectFields, n, e.Pos)
	*probs = append(*probs, ps...)
	pos := e.Pos
	return []expectation{{pos: pos, what: "objects", check: func(o *outcome) []Failure {
		fail := func(name, format string, args ...any) []Failure {
			return []Failure{{Pos: c.Pos(name), Msg: "object " + e.Key + ": " + fmt.Sprintf(format, args...)}}
		}
		data, info, err := o.store.ReadAll(o.ctx, bucket, key, 1<<30)
		exists := err == nil
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fail("", "%v", err)
		}
		if want := !c.Has("exists") || c.Bool("exists"); want != exists {
			if want {
				return fail("exists", "missing")
			}
			return fail("exists", "exists (%d bytes), want none", info.Size)
		}
		if !exists {
			return nil
		}
		var out []Failure
		if c.Has("size") && int64(c.Int("size")) != info.Size {
			out = append(out, fail("size", "size %d, want %d", info.Size, c.Int("size"))...)
		}
		if c.Has("content_type") && c.String("content_type") != info.ContentType {
			out = append(out, fail("content_type", "content type %q, want %q", info.ContentType, c.String("content_type"))...)
		}
		if c.Has("width") || c.Has("height") {
			cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
			if err != nil {
				return append(out, fail("width", "not an image: %v", err)...)
			}
			if c.Has("width") && cfg.Width != c.Int("width") {
				out = append(out, fail("width", "width %d, want %d (%s %dx%d)", cfg.Width, c.Int("width"), format, cfg.Width, cfg.Height)...)
			}
			if c.Has("height") && cfg.Height != c.Int("height") {
				out = append(out, fail("height", "height %d, want %d (%s %dx%d)", cfg.Height, c.Int("height"), format, cfg.Width, cfg.Height)...)
			}
		}
		if c.Has("lines") || c.Has("contains") || c.Has("json") {
			if data, err = gunzip(data); err != nil {
				return append(out, fail("", "%v", err)...)
			}
		}
		if c.Has("json") {
			out = append(out, mismatches(f.Path, child(n, "json"), fmt.Sprintf("objects[%q].json", e.Key), compare(c.Any("json"), decodeJSON(data), true))...)
		}
		if c.Has("lines") {
			if got := bytes.Count(data, []byte("\n")) + btoi(len(data) > 0 && data[len(data)-1] != '\n'); got != c.Int("lines") {
				out = append(out, fail("lines", "%d lines, want %d", got, c.Int("lines"))...)
			}
		}
		for i, s := range c.Strings("contains") {
			if !bytes.Contains(data, []byte(s)) {
				out = append(out, Failure{Pos: at(f.Path, child(n, "contains"), i), Msg: fmt.Sprintf("object %s: does not contain %q: %s", e.Key, s, shortBody(data))})
			}
		}
		return out
	}}}
}

// rowsExpectation: table: [row subsets]; each must match a row of the
// table in the case's data.db (DATABASE/TABLE: another database file of
// the case's home); an empty list means no rows.
func (f *File) rowsExpectation(where string, e nodes.MapEntry, n *yaml.Node, probs *nodes.Problems) expectation {
	table, pos := e.Key, e.Pos
	database := "data.db"
	if i := strings.LastIndex(table, "/"); i >= 0 {
		// DATABASE/TABLE: a db.insert with its own database: (a file in
		// the home).
		database, table = table[:i], table[i+1:]
		if filepath.IsAbs(database) || strings.Contains(database, "..") {
			probs.Add(pos, "%s: rows: %q: the database is a file of the case's home, such as shop.db/orders", where, e.Key)
		}
	}
	if !identRE.MatchString(table) {
		probs.Add(pos, "%s: rows: table %q: use letters, digits and '_'", where, table)
	}
	want, ok := e.Value.([]any)
	if !ok {
		probs.Add(pos, "%s: rows: %s: want a list of rows (each a mapping of column to value)", where, table)
	}
	return expectation{pos: pos, what: "rows", check: func(o *outcome) []Failure {
		got, err := readTable(o.ctx, filepath.Join(o.stateDir, database), table)
		if len(want) == 0 {
			// An empty list: no row at all (no table, or an empty one).
			if err == nil && len(got) > 0 {
				return []Failure{{Pos: pos, Msg: fmt.Sprintf("rows %s: %d rows, want none; first: %s", table, len(got), show(got[0]))}}
			}
			return nil
		}
		if err != nil {
			return []Failure{{Pos: pos, Msg: fmt.Sprintf("rows %s: %v", table, err)}}
		}
		var out []Failure
		for i, w := range want {
			found := false
			var closest []mismatch
			for _, g := range got {
				ms := compare(w, g, true)
				if len(ms) == 0 {
					found = true
					break
				}
				if closest == nil || len(ms) < len(closest) {
					closest = ms
				}
			}
			if !found {
				msg := fmt.Sprintf("rows %s[%d]: no row matches among %d", table, i, len(got))
				for _, m := range closest {
					msg += "\n" + indent("closest row: "+strings.TrimPrefix(pathString("", m.path), ".")+": "+m.msg)
				}
				out = append(out, Failure{Pos: at(f.Path, n, i), Msg: msg})
			}
		}
		return out
	}}
}

// readTable reads every row of a SQLite table as column → value maps.
func readTable(ctx context.Context, path, table string) ([]map[string]any, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no database %s (nothing was inserted)", filepath.Base(path))
	}
	db, err := sqlitedb.Open(path, sqlitedb.SyncNormal)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT * FROM "`+table+`"`) // table checked against identRE
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := map[string]any{}
		for i, col := range cols {
			switch v := vals[i].(type) {
			case []byte:
				row[col] = string(v)
			case int64:
				row[col] = float64(v)
			default:
				row[col] = v
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// machineExpectations: machine: {entity: state}.
func (f *File) machineExpectations(where string, e nodes.MapEntry, n *yaml.Node, probs *nodes.Problems) []expectation {
	machine := e.Key
	m, ok := e.Value.(map[string]any)
	if !ok {
		probs.Add(e.Pos, "%s: machines: %s: want a mapping of entity key to state", where, machine)
		return nil
	}
	var out []expectation
	for _, key := range sortedKeys(m) {
		want, _ := m[key].(string)
		pos := at(f.Path, n, key)
		out = append(out, expectation{pos: pos, what: "machines", check: func(o *outcome) []Failure {
			path := filepath.Join(o.stateDir, "machines.db")
			if _, err := os.Stat(path); err != nil {
				return []Failure{{Pos: pos, Msg: "machines: no machines.db (no state.transition ran)"}}
			}
			st, err := machines.OpenSQLite(path)
			if err != nil {
				return []Failure{{Pos: pos, Msg: fmt.Sprintf("machines: %v", err)}}
			}
			defer st.Close()
			ent, err := st.Get(o.ctx, machine, key)
			if err != nil {
				return []Failure{{Pos: pos, Msg: fmt.Sprintf("machine %s %s: %v", machine, key, err)}}
			}
			got := ent.State
			if ent.Version == 0 {
				got = "(never seen)"
			}
			if got != want {
				return []Failure{{Pos: pos, Msg: fmt.Sprintf("machine %s %s: state %s, want %s", machine, key, got, want)}}
			}
			return nil
		}})
	}
	return out
}

func (f *File) responseExpectations(c *nodes.Config, n *yaml.Node) []expectation {
	pos := nodes.PosOf(f.Path, n)
	return []expectation{{pos: pos, what: "response", check: func(o *outcome) []Failure {
		if o.resp == nil {
			return []Failure{{Pos: pos, Msg: "response: the input was not a request"}}
		}
		r := o.resp
		var out []Failure
		if c.Has("status") && r.status != c.Int("status") {
			out = append(out, Failure{Pos: c.Pos("status"), Msg: fmt.Sprintf("response status %d, want %d; body: %s", r.status, c.Int("status"), shortBody(r.body))})
		}
		for _, h := range c.Map("headers") {
			if got, want := r.header.Get(h.Key), h.Value.(string); got != want {
				out = append(out, Failure{Pos: h.Pos, Msg: fmt.Sprintf("response header %s: %q, want %q", h.Key, got, want)})
			}
		}
		if c.Has("body") && string(r.body) != c.String("body") {
			out = append(out, Failure{Pos: c.Pos("body"), Msg: fmt.Sprintf("response body %q, want %q", shortBody(r.body), c.String("body"))})
		}
		if c.Has("json") {
			out = append(out, mismatches(f.Path, child(n, "json"), "response", compare(c.Any("json"), decodeJSON(r.body), true))...)
		}
		return out
	}}}
}

func shortBody(b []byte) string {
	s := string(bytes.TrimSpace(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gunzip returns gzip data uncompressed, other data as is.
func gunzip(data []byte) ([]byte, error) {
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return out, nil
}
