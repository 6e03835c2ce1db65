package brokers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/internal/sqlitedb"
)

// BenchmarkSQLiteQueue reports durable publish+consume messages/s of the
// embedded queue, publishing one message per Publish (one commit each) or
// batches of 100, next to raw SQLite single-row INSERT commits/s on the
// same machine in the same run (the ceiling for one-per-commit publishing).
func BenchmarkSQLiteQueue(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			n := max(b.N, 5000)
			queue := queueRate(b, n, batch)
			raw := rawInsertRate(b, min(n, 20000))
			b.ReportMetric(queue, "queue_msgs/s")
			b.ReportMetric(raw, "raw_commits/s")
			b.ReportMetric(queue/raw, "ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func queueRate(b *testing.B, n, batch int) float64 {
	br, err := brokers.Open(context.Background(), "sqlite://"+filepath.Join(b.TempDir(), "q.db")+"?poll=5ms&batch=500", nil)
	require.NoError(b, err)
	defer br.Close()
	sub, err := br.Subscriber("bench")
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, "q")
	require.NoError(b, err)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		for m := range ch {
			m.Ack()
			if got.Add(1) == int64(n) {
				close(done)
			}
		}
	}()
	start := time.Now()
	for i := 0; i < n; i += batch {
		msgs := make([]*message.Message, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			msgs = append(msgs, message.NewMessage(fmt.Sprintf("m-%d", j), []byte(`{"level":"info","msg":"hello"}`)))
		}
		require.NoError(b, br.Publisher().Publish("q", msgs...))
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("consumed %d of %d", got.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds()
}

func rawInsertRate(b *testing.B, n int) float64 {
	db, err := sqlitedb.Open(filepath.Join(b.TempDir(), "raw.db"), sqlitedb.SyncNormal)
	require.NoError(b, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT, payload BLOB)`)
	require.NoError(b, err)
	start := time.Now()
	for i := 0; i < n; i++ {
		_, err := db.Exec(`INSERT INTO t (uuid, payload) VALUES (?, ?)`, fmt.Sprint(i), []byte(`{"level":"info","msg":"hello"}`))
		require.NoError(b, err)
	}
	return float64(n) / time.Since(start).Seconds()
}
