package flows_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
)

// benchRound numbers archive rounds across benchmark invocations.
var benchRound atomic.Int64

const (
	benchLogLines = 200_000
	benchBatch    = 10_000
)

// benchLogs returns realistic JSON log lines (about 190 bytes each), and
// the same bytes as one NDJSON file.
func benchLogs() ([][]byte, []byte) {
	levels := []string{"info", "info", "debug", "info", "warn", "info", "info", "debug", "info", "error"}
	paths := []string{"/v1/orders", "/v1/items/%d", "/v1/users/%d/cart", "/healthz", "/v1/search?q=item-%d"}
	start := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	lines := make([][]byte, benchLogLines)
	var all bytes.Buffer
	for i := range lines {
		path := fmt.Sprintf(paths[i%len(paths)], i*7919%100000)
		lines[i] = fmt.Appendf(nil, `{"ts":%q,"level":%q,"service":"api-%d","trace_id":"%016x","msg":"GET %s","status":%d,"latency_ms":%d,"bytes":%d}`,
			start.Add(time.Duration(i)*137*time.Microsecond).Format(time.RFC3339Nano), levels[i%10], i%6, uint64(i)*0x9e3779b97f4a7c15,
			path, []int{200, 200, 200, 201, 204, 304, 404, 500}[i*31%8], i*37%900+1, i*101%20000)
		all.Write(lines[i])
		all.WriteByte('\n')
	}
	return lines, all.Bytes()
}

// BenchmarkArchive reports the archival throughput (MB/s of log lines,
// from the SQLite queue through the archive node, gzip NDJSON, into a
// bucket) next to the `gzip` command compressing the same bytes in the
// same process, alternating over three rounds, medians; on the folder
// driver and on a real MinIO. The archive's time runs from the engine's
// start (the lines are queued before) to the last object's arrival.
func BenchmarkArchive(b *testing.B) {
	gzipPath, err := exec.LookPath("gzip")
	require.NoError(b, err, "the reference is the gzip command")
	lines, all := benchLogs()
	mb := float64(len(all)) / 1e6

	dir := b.TempDir()
	queue := "sqlite://" + filepath.Join(dir, "q.db") + "?poll=5ms"
	br, err := brokers.Open(context.Background(), queue, nil)
	require.NoError(b, err)
	for i := 0; i < len(lines); i += 1000 {
		msgs := make([]*message.Message, 0, 1000)
		for j := i; j < min(i+1000, len(lines)); j++ {
			msgs = append(msgs, message.NewMessage(fmt.Sprintf("line-%06d", j), lines[j]))
		}
		require.NoError(b, br.Publisher().Publish("logs", msgs...))
	}
	require.NoError(b, br.Close())

	gz := func() float64 {
		cmd := exec.Command(gzipPath, "-c")
		cmd.Stdin = bytes.NewReader(all)
		var out bytes.Buffer
		cmd.Stdout = &out
		start := time.Now()
		require.NoError(b, cmd.Run())
		return mb / time.Since(start).Seconds()
	}

	stores := map[string]func() string{
		"folder": func() string { return "fs://" + filepath.Join(dir, "buckets") },
		"minio":  func() string { return miniotest.Start(b).URL() },
	}
	for _, name := range []string{"folder", "minio"} {
		b.Run(name, func(b *testing.B) {
			storageURL := stores[name]()
			archive := func() float64 {
				// Its own consumer group and bucket each time.
				flow := fmt.Sprintf("archive-%s-%d", name, benchRound.Add(1))
				start := time.Now()
				h := startOnB(b, b.TempDir(), queue, storageURL, fmt.Sprintf(`
name: %s
on: {topic: logs}
steps:
  - node: archive
    with: {bucket: %s, max_count: %d, max_wait: 10s}
`, flow, flow, benchBatch))
				want := benchLogLines / benchBatch
				require.Eventually(b, func() bool {
					n := 0
					_ = h.store.List(context.Background(), flow, "", func(storage.ObjectInfo) error { n++; return nil })
					return n >= want
				}, 5*time.Minute, 2*time.Millisecond)
				rate := mb / time.Since(start).Seconds()
				h.stop()
				return rate
			}
			var as, gs []float64
			for r := 0; r < 3; r++ {
				if r%2 == 0 {
					as, gs = append(as, archive()), append(gs, gz())
				} else {
					gs, as = append(gs, gz()), append(as, archive())
				}
			}
			a, g := median(as), median(gs)
			b.ReportMetric(a, "archive_MB/s")
			b.ReportMetric(g, "gzip_MB/s")
			b.ReportMetric(a/g, "ratio")
			b.ReportMetric(mb, "input_MB")
			b.ReportMetric(0, "ns/op")
		})
	}
}
