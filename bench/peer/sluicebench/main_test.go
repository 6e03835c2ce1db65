package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/state"
)

// TestRun runs the benchmark small on each queue, engine and floor, and
// checks the line it prints: every message consumed (run itself fails
// unless every run succeeded), a positive rate.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		queue  string
		record string
		floor  bool
	}{{queueMem, "", false}, {queueSQLite, "", false}, {queueSQLite, flows.RecordFailures, false}, {queueMem, "", true}, {queueSQLite, "", true}} {
		name := tc.queue
		if tc.floor {
			name += "-floor"
		}
		if tc.record != "" {
			name += "-record-" + tc.record
		}
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			o := options{queue: tc.queue, record: tc.record, floor: tc.floor, n: 1500, dir: t.TempDir(), poll: time.Millisecond, timeout: time.Minute}
			require.NoError(t, run(t.Context(), o, &out))
			var line struct {
				Queue    string  `json:"queue"`
				Floor    bool    `json:"floor"`
				Messages int     `json:"messages"`
				Rate     float64 `json:"msgs_per_s"`
			}
			require.NoError(t, json.Unmarshal(out.Bytes(), &line), out.String())
			require.Equal(t, tc.queue, line.Queue)
			require.Equal(t, tc.floor, line.Floor)
			require.Equal(t, 1500, line.Messages)
			require.Positive(t, line.Rate)
			if tc.queue != queueSQLite || tc.floor {
				return
			}
			// The ledger completed every input; run records were kept
			// unless the flow records failures only.
			st, err := state.Open(filepath.Join(o.dir, "state.db"))
			require.NoError(t, err)
			defer st.Close()
			done, err := st.CompletedAll(t.Context(), "peer", []string{"peer-0", "peer-777", "peer-1499"})
			require.NoError(t, err)
			require.Len(t, done, 3)
			runs, err := st.Runs(t.Context(), state.Filter{Flow: "peer", Limit: 10})
			require.NoError(t, err)
			if tc.record == flows.RecordFailures {
				require.Empty(t, runs)
			} else {
				require.Len(t, runs, 10)
			}
		})
	}
}

// TestRunRejectsBadOptions checks that bad flags are reported by name.
func TestRunRejectsBadOptions(t *testing.T) {
	err := run(t.Context(), options{queue: "kafka", n: 1}, &bytes.Buffer{})
	require.ErrorContains(t, err, `-queue must be mem or sqlite, not "kafka"`)
	err = run(t.Context(), options{queue: queueMem, n: 0}, &bytes.Buffer{})
	require.ErrorContains(t, err, "-n must be at least 1")
	err = run(t.Context(), options{queue: queueSQLite, record: "none", n: 1}, &bytes.Buffer{})
	require.ErrorContains(t, err, `-record must be all or failures, not "none"`)
}
