package state

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
)

// benchRun is a run record shaped like a topic flow's: three steps
// succeeded, no error.
func benchRun(i int) Run {
	now := time.Now()
	return Run{ID: watermill.NewULID(), Flow: "peer", Trigger: "topic:in", Input: fmt.Sprintf("peer-%d", i), Attempts: 1,
		Status: StatusSucceeded, Started: now, Duration: 40 * time.Microsecond, BytesIn: 50,
		Steps: []StepRun{{ID: "transform", Node: "transform", Status: "succeeded", Attempts: 1, Duration: 5 * time.Microsecond},
			{ID: "switch", Node: "switch", Status: "succeeded", Attempts: 1, Duration: 3 * time.Microsecond},
			{ID: "transform-2", Node: "transform", Status: "succeeded", Attempts: 1, Duration: 4 * time.Microsecond}}}
}

// BenchmarkRecordRuns reports the run writer's cost per record.
func BenchmarkRecordRuns(b *testing.B) {
	d, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if x := os.Getenv("DROPIDX"); x != "" {
		for _, i := range strings.Split(x, ",") {
			if _, err := d.db.Exec("DROP INDEX " + i); err != nil {
				b.Fatal(err)
			}
		}
	}
	runs := make([]Run, b.N)
	for i := range runs {
		runs[i] = benchRun(i)
	}
	b.ResetTimer()
	defer reportCPU(b)()
	for _, r := range runs {
		d.Record(r)
	}
	if err := d.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCompleteWindows reports the ledger's cost per completion,
// committed in windows of 256 as the streams do.
func BenchmarkCompleteWindows(b *testing.B) {
	d, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	runs := make([]Run, b.N)
	for i := range runs {
		runs[i] = benchRun(i)
	}
	b.ResetTimer()
	defer reportCPU(b)()
	for len(runs) > 0 {
		w := runs[:min(len(runs), 256)]
		runs = runs[len(w):]
		if _, err := d.CompleteAll(context.Background(), w); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// reportCPU reports the process's CPU time per op (user + system, every
// thread) from now until the returned function runs: steadier than the
// wall clock on a shared machine.
func reportCPU(b *testing.B) func() {
	cpu0 := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAppendStepsMatchesEncodingJSON: the run writer's hand-written
// encoding of steps reads back as encoding/json's does.
func TestAppendStepsMatchesEncodingJSON(t *testing.T) {
	for _, steps := range [][]StepRun{
		nil,
		{},
		benchRun(1).Steps,
		{{ID: "s<1>", Node: "function", Status: "failed", Attempts: 3, Duration: 7, Error: "quote \" backslash \\ tab \t é \x00 \xff",
			Output: "b/k&x", Log: "line1\nline2", Calls: []nodes.Call{{Kind: "function", Name: "f", Duration: 5, ColdStart: true}}}},
	} {
		want, err := json.Marshal(steps)
		require.NoError(t, err)
		got := appendSteps(nil, steps)
		assert.JSONEq(t, string(want), string(got))
		var back []StepRun
		require.NoError(t, json.Unmarshal(got, &back))
		assert.Equal(t, steps == nil, back == nil)
	}
}

// TestSQLiteLedgerOddInputs: inputs JSON cannot carry as they are
// (invalid UTF-8, NUL) are committed and found again like any other
// (SQLite only: PostgreSQL text refuses them).
func TestSQLiteLedgerOddInputs(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "state.db"))
	require.NoError(t, err)
	defer d.Close()
	none, err := d.CompleteAll(t.Context(), nil)
	require.NoError(t, err, "nothing to complete returns at once")
	assert.Empty(t, none)
	odd := []string{"bad\xff\xfeutf8", "nul\x00inside", "plain", `quote"d`, "tab\tx"}
	var runs []Run
	for i, in := range odd {
		runs = append(runs, Run{ID: fmt.Sprint("odd-", i), Flow: "f", Input: in, Status: StatusSucceeded, Started: time.Now()})
	}
	dups, err := d.CompleteAll(t.Context(), runs)
	require.NoError(t, err)
	assert.Equal(t, make([]bool, len(odd)), dups)
	done, err := d.CompletedAll(t.Context(), "f", odd)
	require.NoError(t, err)
	for i, in := range odd {
		assert.Equal(t, fmt.Sprint("odd-", i), done[in].Run, "%q", in)
	}
	// Completing them again finds every one a duplicate.
	for i := range runs {
		runs[i].ID += "-again"
	}
	dups, err = d.CompleteAll(t.Context(), runs)
	require.NoError(t, err)
	for i, dup := range dups {
		assert.True(t, dup, "%q", odd[i])
	}
}
