package flows_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
	_ "github.com/sluicehq/sluice/storage/s3"
)

// TestS3ReconcileCatchesUpWithoutNotifications: MinIO sends no
// notifications at all here (the worst case of lost events). Objects
// uploaded while Sluice is down are processed once at start; a restart
// replays nothing; an upload during the run is found by the next listing.
func TestS3ReconcileCatchesUpWithoutNotifications(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	srv := miniotest.Start(t)
	storageURL := srv.URL() + "&reconcile=200ms"
	store, err := storage.Open(t.Context(), storageURL)
	require.NoError(t, err)
	require.NoError(t, store.EnsureBucket(t.Context(), "inbox"))
	for i := 0; i < 50; i++ {
		_, err := store.PutBytes(t.Context(), "inbox", fmt.Sprintf("doc-%02d.txt", i), []byte(fmt.Sprint(i)), storage.PutOptions{})
		require.NoError(t, err)
	}
	flow := `
name: docs
on: {bucket: inbox}
steps:
  - node: storage.put
    with: {bucket: outbox}
`
	dir := t.TempDir()
	queue := "sqlite://" + filepath.Join(dir, "queue.db") + "?poll=10ms"
	count := func(h *harness) int {
		require.NoError(t, h.state.Flush(t.Context()))
		runs, err := h.state.Runs(t.Context(), state.Filter{Flow: "docs", Status: state.StatusSucceeded, Limit: 1000})
		require.NoError(t, err)
		return len(runs)
	}

	h := startOn(t, dir, queue, storageURL, flow, nil)
	require.Eventually(t, func() bool { return count(h) == 50 }, 30*time.Second, 50*time.Millisecond)
	h.stop()

	h = startOn(t, dir, queue, storageURL, flow, nil)
	_, err = store.PutBytes(t.Context(), "inbox", "late.txt", []byte("late"), storage.PutOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return count(h) >= 51 }, 30*time.Second, 50*time.Millisecond,
		"the periodic listing finds an upload whose notification never came")
	_, err = store.Stat(t.Context(), "outbox", "late.txt")
	require.NoError(t, err)
	// Let two more full listings pass (counted as repeats), then check that
	// they started nothing.
	repeats := func() float64 {
		return h.counter("sluice_bucket_events_total", map[string]string{"bucket": "inbox", "outcome": "repeat"})
	}
	target := repeats() + 2*51
	require.Eventually(t, func() bool { return repeats() >= target }, 30*time.Second, 20*time.Millisecond)
	assert.Equal(t, 51, count(h), "each object ran once: nothing replayed after the restart")
	for i := 0; i < 50; i++ {
		data, _, err := store.ReadAll(t.Context(), "outbox", fmt.Sprintf("doc-%02d.txt", i), 0)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(i), string(data))
	}
}
