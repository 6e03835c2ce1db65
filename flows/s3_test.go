package flows_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	_ "github.com/sluicehq/sluice/brokers/kafka"
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

// TestS3NotificationsThroughKafka is the durable path: MinIO's Kafka
// notification target writes records to a topic, and the bucket trigger
// reads them through events_topic.
func TestS3NotificationsThroughKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer cluster.Close()
	addrs := strings.Join(cluster.ListenAddrs(), ",")
	srv := miniotest.Start(t,
		"MINIO_NOTIFY_KAFKA_ENABLE_SLUICE=on",
		"MINIO_NOTIFY_KAFKA_BROKERS_SLUICE="+addrs,
		"MINIO_NOTIFY_KAFKA_TOPIC_SLUICE=minio.events",
		"MINIO_NOTIFY_KAFKA_QUEUE_DIR_SLUICE="+t.TempDir(),
	)
	storageURL := srv.URL() + "&reconcile=0&notify_arn=arn:minio:sqs::SLUICE:kafka"
	store, err := storage.Open(t.Context(), storageURL)
	require.NoError(t, err)
	require.NoError(t, store.EnsureBucket(t.Context(), "inbox"))
	_, err = store.PutBytes(t.Context(), "inbox", "marker.txt", []byte("m"), storage.PutOptions{})
	require.NoError(t, err)

	h := startOn(t, t.TempDir(), "kafka://"+addrs+"?max_wait=20ms&partitions=1", storageURL, `
name: notified
on: {bucket: inbox, events_topic: minio.events}
steps:
  - node: publish
    with: {topic: seen, payload: '{"key": payload.key, "event": payload.event}'}
`, nil)
	first := h.consume("seen", 1) // the start listing is over once this ran
	assert.Equal(t, map[string]any{"key": "marker.txt", "event": "s3:ObjectCreated:Existing"}, payloadOf(t, first[0]))

	for i := 0; i < 5; i++ {
		_, err := store.PutBytes(t.Context(), "inbox", fmt.Sprintf("new-%d.txt", i), []byte("x"), storage.PutOptions{})
		require.NoError(t, err)
	}
	got := map[string]string{}
	for _, m := range h.consumeAs("second-reader", "seen", 6) { // from the oldest: the marker too
		p := payloadOf(t, m)
		got[p["key"].(string)] = p["event"].(string)
	}
	for i := 0; i < 5; i++ {
		assert.Equal(t, "s3:ObjectCreated:Put", got[fmt.Sprintf("new-%d.txt", i)], "new-%d came through Kafka", i)
	}
	assert.Len(t, got, 6, "each object once")
}

// TestArchiveWaitsForMinIOToComeBack: MinIO dies while logs are being
// archived into it. The writes fail and are retried, nothing is committed
// or dead-lettered meanwhile; once MinIO is back every line is archived,
// exactly once.
func TestArchiveWaitsForMinIOToComeBack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts, kills and restarts MinIO")
	}
	srv := miniotest.Start(t)
	dir := t.TempDir()
	h := startOn(t, dir, "sqlite://"+filepath.Join(dir, "q.db")+"?poll=10ms", srv.URL(), `
name: logs
on: {topic: logs}
retry: {backoff: 50ms, max_backoff: 200ms}
steps:
  - node: archive
    with: {bucket: archive, max_count: 100, max_wait: 200ms}
`, nil)
	publishLogs(t, h.broker, "logs", 0, 300, nil)
	require.Eventually(t, func() bool { return lineCount(archived(t, h.store, "archive")) == 300 }, 30*time.Second, 20*time.Millisecond)

	srv.Stop()
	publishLogs(t, h.broker, "logs", 300, 300, nil)
	failed := func() float64 {
		return h.counter("sluice_step_failed_attempts_total", map[string]string{"flow": "logs"})
	}
	require.Eventually(t, func() bool { return failed() >= 2 }, 60*time.Second, 20*time.Millisecond, "writes fail while MinIO is down")
	srv.Restart()

	var objs map[string][]string
	require.Eventually(t, func() bool { objs = archived(t, h.store, "archive"); return lineCount(objs) >= 600 }, 60*time.Second, 50*time.Millisecond)
	seen := map[int]int{}
	for _, ns := range numbers(t, objs) {
		for _, n := range ns {
			seen[n]++
		}
	}
	assert.Len(t, seen, 600)
	assert.Equal(t, 600, lineCount(objs), "no line archived twice")
	runs := h.waitRuns(state.Filter{Flow: "logs", Status: state.StatusSucceeded}, 6)
	assert.Len(t, runs, 6)
	retried := 0
	for _, r := range runs {
		if r.Attempts > 1 {
			retried++
		}
	}
	assert.Positive(t, retried, "a batch was written after retries")
	dead, err := h.state.Runs(t.Context(), state.Filter{Flow: "logs", Status: state.StatusDeadLettered})
	require.NoError(t, err)
	assert.Empty(t, dead, "nothing dead-lettered for an outage")
}
