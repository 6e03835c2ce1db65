package examples_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/brokers"
	_ "github.com/sluicehq/sluice/brokers/kafka"
	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
)

const archiveLines = 100_000

// TestLogArchive follows examples/log-archive/README.md: 100,000 log lines
// are published with `sluice publish --ndjson`; `sluice run` archives them
// on the embedded default and is killed (SIGKILL) once, midway, then
// restarted. The archived objects hold every line exactly once, each object
// in publish order, and every error line reached the alerts topic.
func TestLogArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("archives 100,000 lines and kills sluice once")
	}
	dir := t.TempDir()
	home := filepath.Join(dir, ".sluice")
	logArchiveScenario(t, dir, "sqlite://"+filepath.Join(home, "queue.db"), "fs://"+filepath.Join(home, "buckets"))
}

// TestLogArchiveOnKafkaAndMinIO is the same with the logs on Kafka (four
// partitions, in-process Kafka protocol) and the archive in a real MinIO.
func TestLogArchiveOnKafkaAndMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO; archives 100,000 lines and kills sluice once")
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	require.NoError(t, err)
	defer kafka.Close()
	srv := miniotest.Start(t)
	t.Setenv("ARCHIVE_MAX_WAIT", "2s") // each partition's last, partial batch
	logArchiveScenario(t, t.TempDir(), "kafka://"+strings.Join(kafka.ListenAddrs(), ",")+"?max_wait=20ms&partitions=4", srv.URL())
}

func logArchiveScenario(t *testing.T, dir, brokerURL, storageURL string) {
	t.Setenv("SLUICE_BROKER", brokerURL)
	t.Setenv("SLUICE_STORAGE", storageURL)
	var buf bytes.Buffer
	levels := []string{"info", "info", "debug", "info", "warn", "info", "info", "debug", "info", "error"}
	start := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	for i := 0; i < archiveLines; i++ {
		fmt.Fprintf(&buf, `{"id":"line-%06d","n":%d,"ts":%q,"level":%q,"service":"api-%d","msg":"GET /v1/items/%d 200","latency_ms":%d}`+"\n",
			i, i, start.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), levels[i%10], i%4, i*7%1000, i%250)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "logs.ndjson"), buf.Bytes(), 0o644))
	out := cli(t, dir, "publish", "--ndjson", "--id-field", "id", "logs", "@logs.ndjson")
	require.Contains(t, out, fmt.Sprintf("published %d messages to logs", archiveLines))

	flow, err := filepath.Abs("log-archive")
	require.NoError(t, err)
	in := run(t, dir, flow)
	store, err := storage.Open(context.Background(), storageURL)
	require.NoError(t, err)
	defer store.Close()
	objects := func() int {
		n := 0
		_ = store.List(context.Background(), "archive", "", func(storage.ObjectInfo) error { n++; return nil })
		return n
	}

	// Kill once, midway: after the second object, while the backlog is
	// being archived.
	require.Eventually(t, func() bool { return objects() >= 2 }, 60*time.Second, 2*time.Millisecond, "no objects:\n%s", in.log)
	require.NoError(t, in.cmd.Process.Kill())
	_ = in.cmd.Wait()
	_, atKill := archivedLines(t, store)
	t.Logf("killed with %d objects, %d lines archived", objects(), atKill)
	require.Less(t, atKill, archiveLines, "the kill came after everything was archived")

	startAt(t, in, flow)
	lines := map[int]int{}
	total := 0
	require.Eventually(t, func() bool {
		lines, total = archivedLines(t, store)
		return total >= archiveLines
	}, 120*time.Second, 100*time.Millisecond, "archived lines:\n%s", in.log)
	in.stop()
	lines, total = archivedLines(t, store)
	assert.Equal(t, archiveLines, total, "no line archived twice")
	assert.Len(t, lines, archiveLines, "no line lost")

	// Each object written is a run; `runs show` names the object.
	var run struct{ ID, Input string }
	first, _, _ := strings.Cut(cli(t, dir, "runs", "--flow", "log-archive", "--status", "succeeded", "--json"), "\n")
	require.NoError(t, json.Unmarshal([]byte(first), &run))
	assert.Regexp(t, `^logs/\d+/\d+$`, run.Input)
	assert.Regexp(t, `archive/logs/dt=2026-11-25/hour=17/part-\d+-\d+\.ndjson\.gz \(\d+ records, \d+ bytes\)`, cli(t, dir, "runs", "show", run.ID))

	// Every error line reached alerts (at least once; duplicates after the
	// kill carry the same message id).
	br, err := brokers.Open(context.Background(), brokerURL, nil)
	require.NoError(t, err)
	defer br.Close()
	sub, err := br.Subscriber("test-alerts")
	require.NoError(t, err)
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "alerts")
	require.NoError(t, err)
	alerts := map[string]bool{}
	for len(alerts) < archiveLines/10 {
		select {
		case m := <-ch:
			var p struct{ Level string }
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			assert.Equal(t, "error", p.Level)
			alerts[m.UUID] = true
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("%d of %d alerts", len(alerts), archiveLines/10)
		}
	}
}

// archivedLines reads every archived object: how many times each line
// number is archived, and the total number of lines. Each object must be
// a well-formed gzip NDJSON file with its lines in publish order, under a
// key named as the flow says.
func archivedLines(t *testing.T, store *storage.Store) (map[int]int, int) {
	t.Helper()
	ctx := context.Background()
	lines, total := map[int]int{}, 0
	require.NoError(t, store.List(ctx, "archive", "", func(o storage.ObjectInfo) error {
		assert.Regexp(t, `^logs/dt=\d{4}-\d\d-\d\d/hour=\d\d/part-\d+-\d+\.ndjson\.gz$`, o.Key)
		data, _, err := store.ReadAll(ctx, "archive", o.Key, 0)
		if err != nil {
			return err
		}
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", o.Key, err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			return fmt.Errorf("%s: %w", o.Key, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(plain))
		prev := -1
		for sc.Scan() {
			var l struct{ N int }
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return fmt.Errorf("%s: line %q: %w", o.Key, sc.Text(), err)
			}
			if l.N <= prev {
				return fmt.Errorf("%s: line %d after %d", o.Key, l.N, prev)
			}
			prev = l.N
			lines[l.N]++
			total++
		}
		assert.False(t, strings.Contains(string(plain), "\n\n"), o.Key)
		return sc.Err()
	}))
	return lines, total
}
