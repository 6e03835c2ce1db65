package flowtest

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/flows"
)

// Find returns the test files paths name: a file as is; a folder, or
// dir/... , every *_test.yaml and *_test.yml below it (hidden folders and
// testdata folders skipped, as go test ./... does), sorted.
func Find(paths []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range paths {
		root := strings.TrimSuffix(strings.TrimSuffix(p, "..."), "/")
		if root == "" {
			root = "."
		}
		st, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			add(p)
			continue
		}
		var found []string
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			if !d.IsDir() && flows.IsTestFile(path) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no test files (*_test.yaml, *_test.yml)", p)
		}
		sort.Strings(found)
		for _, f := range found {
			add(f)
		}
	}
	return out, nil
}

// Reporter prints results as go test does: failures always (with the
// case's engine log), passes and skips with Verbose, an ok/FAIL line per
// file; or, with JSON, one event
// per line as go test -json does (Action run, output, pass, fail, skip;
// Package is the test file, Test the case).
type Reporter struct {
	W       io.Writer
	Verbose bool
	JSON    bool
}

// event is one line of JSON output, shaped like go test -json's.
type event struct {
	Time    time.Time `json:"Time"`
	Action  string    `json:"Action"`
	Package string    `json:"Package"`
	Test    string    `json:"Test,omitempty"`
	Elapsed *float64  `json:"Elapsed,omitempty"`
	Output  string    `json:"Output,omitempty"`
}

func (r *Reporter) emit(e event) {
	e.Time = time.Now()
	b, _ := json.Marshal(e)
	fmt.Fprintf(r.W, "%s\n", b)
}

func seconds(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

// Case reports one case as it ends.
func (r *Reporter) Case(c CaseResult) {
	name := c.File + "/" + c.Name
	head := fmt.Sprintf("--- %s: %s (%s)\n", strings.ToUpper(c.Result), name, short(c.Elapsed))
	var body strings.Builder
	for _, f := range c.Failures {
		body.WriteString(indent(f.String()) + "\n")
	}
	if c.Result == Skip {
		body.WriteString(indent(c.Reason) + "\n")
	}
	if c.Log != "" && (c.Result == Fail || r.Verbose) {
		body.WriteString(indent("log:\n"+strings.TrimRight(c.Log, "\n")) + "\n")
	}
	if r.JSON {
		r.emit(event{Action: "run", Package: c.File, Test: c.Name})
		r.emit(event{Action: "output", Package: c.File, Test: c.Name, Output: head})
		if body.Len() > 0 {
			r.emit(event{Action: "output", Package: c.File, Test: c.Name, Output: body.String()})
		}
		r.emit(event{Action: c.Result, Package: c.File, Test: c.Name, Elapsed: seconds(c.Elapsed)})
		return
	}
	if c.Result == Fail || r.Verbose {
		fmt.Fprint(r.W, head+body.String())
	}
}

// File reports a test file once its cases ran.
func (r *Reporter) File(f FileResult) {
	var line string
	action := Pass
	switch {
	case f.Err != nil:
		action = Fail
		line = fmt.Sprintf("%s\nFAIL\t%s [setup failed]\n", strings.TrimRight(f.Err.Error(), "\n"), f.Path)
	case f.Failed():
		action = Fail
		line = fmt.Sprintf("FAIL\t%s\t%.3fs\n", f.Path, f.Elapsed.Seconds())
	default:
		line = fmt.Sprintf("ok  \t%s\t%.3fs\n", f.Path, f.Elapsed.Seconds())
		if len(f.Cases) == 0 {
			line = fmt.Sprintf("ok  \t%s\t%.3fs [no cases to run]\n", f.Path, f.Elapsed.Seconds())
		}
	}
	if r.JSON {
		r.emit(event{Action: "output", Package: f.Path, Output: line})
		r.emit(event{Action: action, Package: f.Path, Elapsed: seconds(f.Elapsed)})
		return
	}
	fmt.Fprint(r.W, line)
}

// short prints a duration the way a reader wants it: 1.2ms, 340µs, 2.51s.
func short(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
