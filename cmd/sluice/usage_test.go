package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/state"
)

func TestUsage(t *testing.T) {
	home := t.TempDir()
	st, err := state.Open(filepath.Join(home, "state.db"))
	require.NoError(t, err)
	today := time.Now().UTC()
	yesterday := today.AddDate(0, 0, -1)
	for i, r := range []state.Run{
		{Flow: "thumbs", Status: state.StatusSucceeded, Started: yesterday, Duration: 1500 * time.Millisecond, BytesIn: 2 << 20, BytesOut: 10 << 10},
		{Flow: "thumbs", Status: state.StatusSucceeded, Started: today, Duration: 500 * time.Millisecond, BytesIn: 1 << 20, BytesOut: 5 << 10},
		{Flow: "thumbs", Status: state.StatusDeadLettered, Started: today, Duration: 10 * time.Millisecond, BytesIn: 12},
		{Flow: "thumbs", Status: state.StatusDuplicate, Started: today, Duration: time.Millisecond},
		{Flow: "orders", Status: state.StatusSucceeded, Started: today, Duration: 2 * time.Millisecond, BytesIn: 100, BytesOut: 120},
		{Flow: "orders", Status: state.StatusSucceeded, Started: today.AddDate(0, 0, -40), Duration: time.Second},
	} {
		r.ID, r.Trigger, r.Input, r.Attempts = string(rune('a'+i)), "topic:x", string(rune('a'+i)), 1
		st.Record(r)
	}
	require.NoError(t, st.Close())

	out, err := sluice(t, home, "", "usage", "--json")
	require.NoError(t, err)
	var rows []state.Usage
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var u state.Usage
		require.NoError(t, json.Unmarshal([]byte(line), &u))
		rows = append(rows, u)
	}
	day := func(t time.Time) string { return t.Format("2006-01-02") }
	assert.Equal(t, []state.Usage{
		{Flow: "thumbs", Day: day(yesterday), Calls: 1, ComputeSeconds: 1.5, BytesIn: 2 << 20, BytesOut: 10 << 10},
		{Flow: "orders", Day: day(today), Calls: 1, ComputeSeconds: 0.002, BytesIn: 100, BytesOut: 120},
		{Flow: "thumbs", Day: day(today), Calls: 2, Errors: 1, Duplicates: 1, ComputeSeconds: 0.51, BytesIn: 1<<20 + 12, BytesOut: 5 << 10},
	}, rows, "the last 30 days; the 40-day-old run is outside")

	out, err = sluice(t, home, "", "usage", "--flow", "thumbs", "--days", "1")
	require.NoError(t, err)
	assert.Contains(t, out, "COMPUTE-S")
	assert.Contains(t, out, "1.0 MiB")
	assert.NotContains(t, out, day(yesterday))
	assert.Regexp(t, `total\s+2\s+1\s+1\s+0\.510`, out)
}
