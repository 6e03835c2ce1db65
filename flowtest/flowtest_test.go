package flowtest_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/flowtest"
	_ "github.com/sluicehq/sluice/nodes/all" // the node types flows use
)

var update = flag.Bool("update", false, "rewrite the golden files")

func results(res flowtest.FileResult) map[string]flowtest.CaseResult {
	out := map[string]flowtest.CaseResult{}
	for _, c := range res.Cases {
		out[c.Name] = c
	}
	return out
}

// TestPassingCases runs every kind of input (messages, before inputs,
// objects, requests) and expectation against real flows on the engine.
func TestPassingCases(t *testing.T) {
	res := flowtest.RunFile(t.Context(), "testdata/shop/pass_test.yaml", flowtest.Options{}, nil)
	require.NoError(t, res.Err)
	got := results(res)
	require.Len(t, got, 7)
	for name, c := range got {
		if name == "skipped" {
			assert.Equal(t, flowtest.Skip, c.Result)
			assert.Equal(t, "not today", c.Reason)
			continue
		}
		assert.Equal(t, flowtest.Pass, c.Result, "%s: %v", name, c.Failures)
	}
	assert.False(t, res.Failed())
}

// mask replaces what changes from run to run (run ids, durations) and
// the engine's log lines, which are not this package's.
func mask(s string) string {
	s = regexp.MustCompile(`run[ =][0-9A-Z]{26}`).ReplaceAllString(s, "run RUN")
	s = regexp.MustCompile(`(?m)^    level=.*$`).ReplaceAllString(s, "    (an engine log line)") // the engine's words
	s = regexp.MustCompile(`\(\d[^)]*s\)`).ReplaceAllString(s, "(TIME)")
	return regexp.MustCompile(`\t\d+\.\d+s`).ReplaceAllString(s, "\tTIME")
}

// TestFailingCases: every unmet expectation is reported at the test
// file's line:col of what it expected, with what was got.
func TestFailingCases(t *testing.T) {
	var buf bytes.Buffer
	rep := &flowtest.Reporter{W: &buf}
	res := flowtest.RunFile(t.Context(), "testdata/shop/fail_test.yaml", flowtest.Options{}, rep.Case)
	rep.File(res)
	require.NoError(t, res.Err)
	assert.True(t, res.Failed())
	for name, c := range results(res) {
		assert.Equal(t, flowtest.Fail, c.Result, name)
	}
	golden(t, "testdata/shop/fail.golden", mask(buf.String()))
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./flowtest -run %s -update to write it", t.Name())
	assert.Equal(t, string(want), got)
}

// TestJSONEvents: --json prints go test -json's events, one per line.
func TestJSONEvents(t *testing.T) {
	var buf bytes.Buffer
	rep := &flowtest.Reporter{W: &buf, JSON: true}
	opts := flowtest.Options{Run: regexp.MustCompile(`^wrong-(payload|response)$`)}
	res := flowtest.RunFile(t.Context(), "testdata/shop/fail_test.yaml", opts, rep.Case)
	rep.File(res)
	type event struct {
		Action, Package, Test, Output string
		Elapsed                       *float64
	}
	var evs []event
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var e event
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		assert.Equal(t, "testdata/shop/fail_test.yaml", e.Package)
		evs = append(evs, e)
	}
	var actions []string
	output := map[string]string{}
	for _, e := range evs {
		actions = append(actions, e.Action+":"+e.Test)
		output[e.Test] += e.Output
		if e.Action == "fail" {
			assert.NotNil(t, e.Elapsed)
		}
	}
	assert.Equal(t, []string{
		"run:wrong-payload", "output:wrong-payload", "output:wrong-payload", "fail:wrong-payload",
		"run:wrong-response", "output:wrong-response", "output:wrong-response", "fail:wrong-response",
		"output:", "fail:",
	}, actions)
	assert.Contains(t, output["wrong-payload"], "testdata/shop/fail_test.yaml:6:50: payload.total: got 5, want 6\n")
	assert.Contains(t, output["wrong-response"], "testdata/shop/fail_test.yaml:31:15: response status 200, want 201")
	assert.Contains(t, output[""], "FAIL\ttestdata/shop/fail_test.yaml\t")
}

// TestFileProblems: a bad test file is refused before anything runs,
// every problem at once, each at its line:col, sorted.
func TestFileProblems(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown fields", `
flow: flows.yaml
tests: []
cases:
  - name: a
    mesage: {payload: 1}
    message: {payload: 1, topc: x}
`, `t_test.yaml:2:1: unknown field "tests"
t_test.yaml:5:5: cases[0]: unknown field "mesage" (did you mean "message"?)
t_test.yaml:6:27: message: cases[0]: unknown field "topc" (did you mean "topic"?)`},
		{"bad cases", `
flow: flows.yaml
cases:
  - name: two inputs
    message: {payload: 1}
    request: {path: /x}
    status: done
    dead_letter: "(["
    expect: ["payload.x >"]
  - name: two inputs
  - before: [{}]
    message: {}
    objects: {nokey: {exists: true}, a/b: {wide: 1}}
    rows: {orders: 1}
    published: {x: yes}
    machines: {order: 2}
  - name: fixtures
    object: {key: k, file: missing.jpg}
  - name: paths
    request: {path: x}
`, `t_test.yaml:3:11: cases[0]: case name "two inputs": no spaces or '/' (it is matched by --run like a Go test name)
t_test.yaml:5:14: cases[0]: give one input, not message and request
t_test.yaml:6:13: cases[0]: field "status": "done" is not one of succeeded, dead_lettered, filtered, failed
t_test.yaml:7:19: cases[0]: dead_letter: error parsing regexp: missing closing ]: ` + "`[`" + `
t_test.yaml:8:14: cases[0]: expect[0]: unexpected token EOF
t_test.yaml:9:5: cases[1]: no input: give one of message, object or request
t_test.yaml:9:11: cases[1]: case name "two inputs": no spaces or '/' (it is matched by --run like a Go test name)
t_test.yaml:9:11: cases[1]: duplicate case name "two inputs"
t_test.yaml:10:5: cases[2]: missing required field "name"
t_test.yaml:10:14: cases[2]: before[0]: give one of message, object or request
t_test.yaml:12:22: cases[2]: objects: "nokey": want bucket/key
t_test.yaml:12:44: cases[2]: objects: a/b: unknown field "wide"
t_test.yaml:13:20: cases[2]: rows: orders: want a list of rows (each a mapping of column to value)
t_test.yaml:14:20: cases[2]: published: x: want a count or a list of payload subsets
t_test.yaml:15:23: cases[2]: machines: order: want a mapping of entity key to state
t_test.yaml:17:28: cases[3]: object: fixture: open missing.jpg: no such file or directory
t_test.yaml:19:21: cases[4]: request: path "x" must start with /`},
		{"empty", "# nothing yet\n", `t_test.yaml:1:1: empty test file`},
		{"two documents", "flow: a.yaml\ncases: []\n---\nflow: b.yaml\n", `t_test.yaml:3:1: one YAML document per test file (put more cases under cases:)`},
		{"not YAML", "flow: [\n", `t_test.yaml:1:1: invalid YAML: did not find expected node content`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := flowtest.Parse("t_test.yaml", []byte(strings.TrimLeft(c.yaml, "\n")))
			require.Error(t, err)
			t.Log(err)
			assert.Equal(t, c.want, err.Error())
		})
	}
}

// TestFind: folders and dir/... are searched for *_test.yaml files, the
// way go test ./... searches packages; a file is taken as given.
func TestFind(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a/flow.yaml", "a/flow_test.yaml", "a/b/x_test.yml", "a/testdata/t_test.yaml", "a/.hidden/h_test.yaml", "c/flow.yaml"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o644))
	}
	want := []string{filepath.Join(dir, "a/b/x_test.yml"), filepath.Join(dir, "a/flow_test.yaml")}
	for _, arg := range []string{filepath.Join(dir, "a"), filepath.Join(dir, "a") + "/..."} {
		got, err := flowtest.Find([]string{arg})
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	got, err := flowtest.Find([]string{filepath.Join(dir, "a/testdata/t_test.yaml")})
	require.NoError(t, err)
	assert.Len(t, got, 1)
	_, err = flowtest.Find([]string{filepath.Join(dir, "c")})
	assert.ErrorContains(t, err, "no test files")
}

// TestLoaderSkipsTestFiles: loading a folder of flows leaves its test
// files out (they are not flows).
func TestLoaderSkipsTestFiles(t *testing.T) {
	fl, err := flows.Loader{}.Load("testdata/shop")
	require.NoError(t, err)
	var names []string
	for _, f := range fl {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"orders", "files", "hello"}, names)
}

// TestSetupProblems: a test file whose flow does not resolve fails as a
// whole, with the position of its flow field.
func TestSetupProblems(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x_test.yaml")
	require.NoError(t, os.WriteFile(path, []byte("flow: ordres\ncases:\n  - name: a\n    message: {payload: 1}\n"), 0o644))
	data, err := os.ReadFile("testdata/shop/flows.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flows.yaml"), data, 0o644))
	res := flowtest.RunFile(t.Context(), path, flowtest.Options{}, nil)
	require.Error(t, res.Err)
	assert.Equal(t, path+`:1:7: flow: no flow file or flow named "ordres" in `+dir+` (did you mean "orders"?)`, res.Err.Error())
	assert.True(t, res.Failed())
}

// TestRequires: a test file's cases are skipped, with the hint, while a
// file it requires is missing; under CI the file fails instead.
func TestRequires(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/bench/flow.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flow.yaml"), data, 0o644))
	path := filepath.Join(dir, "flow_test.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`flow: flow.yaml
requires: {model.bin: "fetch it with make model"}
cases:
  - name: a
    message: {payload: {n: 1}}
`), 0o644))
	res := flowtest.RunFile(t.Context(), path, flowtest.Options{}, nil)
	require.NoError(t, res.Err)
	require.Len(t, res.Cases, 1)
	assert.Equal(t, flowtest.Skip, res.Cases[0].Result)
	assert.Equal(t, "model.bin is missing: fetch it with make model (under CI=true this fails)", res.Cases[0].Reason)

	res = flowtest.RunFile(t.Context(), path, flowtest.Options{CI: true}, nil)
	require.Error(t, res.Err)
	assert.Equal(t, path+":2:12: requires model.bin, missing (CI=true): fetch it with make model", res.Err.Error())

	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.bin"), nil, 0o644))
	res = flowtest.RunFile(t.Context(), path, flowtest.Options{CI: true}, nil)
	require.NoError(t, res.Err)
	assert.Equal(t, flowtest.Pass, res.Cases[0].Result, "%v", res.Cases[0].Failures)
}

// TestShared: with shared: true the cases run in order on one engine and
// see each other's effects; a flow named by name is found in the folder.
func TestShared(t *testing.T) {
	var buf bytes.Buffer
	rep := &flowtest.Reporter{W: &buf, Verbose: true}
	res := flowtest.RunFile(t.Context(), "testdata/shop/shared_test.yaml", flowtest.Options{}, rep.Case)
	require.NoError(t, res.Err)
	var names []string
	for _, c := range res.Cases {
		names = append(names, c.Name)
		assert.Equal(t, flowtest.Pass, c.Result, "%s: %v", c.Name, c.Failures)
	}
	assert.Equal(t, []string{"first", "second-sees-the-first", "a-failure-keeps-the-engine", "third"}, names)
	assert.Contains(t, buf.String(), "run failed; input sent to the dead-letter topic", "the failing case's log is its own")
	assert.NotContains(t, strings.SplitN(buf.String(), "--- PASS: testdata/shop/shared_test.yaml/a-failure", 2)[0], "dead-letter topic")
}
