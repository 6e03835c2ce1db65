package flows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLatestTick(t *testing.T) {
	now := time.Date(2026, 11, 25, 17, 30, 15, 500_000_000, time.UTC)
	for _, tc := range []struct {
		cron  string
		after time.Time
		want  time.Time
		ok    bool
	}{
		// every second, last run a year ago: the second just gone, not
		// one a million seconds after the last run
		{"* * * * * *", now.AddDate(-1, 0, 0), time.Date(2026, 11, 25, 17, 30, 15, 0, time.UTC), true},
		{"0 3 * * *", now.Add(-49 * time.Hour), time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC), true},
		{"0 0 1 1 *", now.AddDate(-3, 0, 0), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"0 3 * * *", now.Add(-time.Hour), time.Time{}, false}, // ran after the last tick
	} {
		sched, err := cronParser.Parse(tc.cron)
		require.NoError(t, err)
		got, ok := latestTick(sched, tc.after, now)
		assert.Equal(t, tc.ok, ok, tc.cron)
		assert.Equal(t, tc.want, got, tc.cron)
	}
}
