package state_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/brokers"
	_ "github.com/sluicehq/sluice/brokers/kafka" // kafka://
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/all"
	"github.com/sluicehq/sluice/state"
)

const ledgerFlow = `
name: bench
on: {topic: in}
steps:
  - node: transform
    with:
      set: {total: payload.qty * payload.price}
  - node: switch
    with:
      cases:
        - when: payload.qty < 0
          topic: rejected
  - node: publish
    with: {topic: out}
`

// BenchmarkLedgerBackends reports messages/s through a 3-step flow
// (transform → switch → publish) with the completion ledger in
// PostgreSQL next to the same flow with the ledger in SQLite, on the same
// broker in the same run: three rounds rotating which goes first,
// medians, and the ratios. PostgreSQL is measured twice: durable (the
// server's default, a WAL flush per commit) and with
// synchronous_commit=off in the state URL, the durability class of the
// SQLite ledger (synchronous=NORMAL: a Sluice crash loses nothing; a
// database server or machine crash may lose the last moments of commits,
// whose inputs then run again). Brokers: the embedded SQLite queue (one
// message at a time: each run waits for its own commit) and Kafka with 4
// partitions consumed concurrently (runs finishing together share a
// commit).
func BenchmarkLedgerBackends(b *testing.B) {
	pgtest.Server(b) // skips without PostgreSQL
	for _, kind := range []string{"sqlite", "kafka"} {
		b.Run(kind, func(b *testing.B) {
			n := max(b.N, 2000)
			modes := []struct {
				name string
				url  func() string
				got  []float64
			}{
				{name: "postgres", url: func() string { return pgtest.URL(b) }},
				{name: "postgres_async", url: func() string { return pgtest.URL(b) + "&synchronous_commit=off" }},
				{name: "sqlite", url: func() string { return "sqlite://" + filepath.Join(b.TempDir(), "state.db") }},
			}
			for round := range 3 {
				for i := range modes {
					m := &modes[(i+round)%len(modes)]
					m.got = append(m.got, measureLedger(b, kind, n, m.url()))
				}
			}
			sq := median(modes[2].got)
			b.ReportMetric(sq, "sqlite_msgs/s")
			for _, m := range modes[:2] {
				b.ReportMetric(median(m.got), m.name+"_msgs/s")
				b.ReportMetric(median(m.got)/sq, m.name+"_ratio")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

func measureLedger(b *testing.B, kind string, n int, stateURL string) float64 {
	b.Helper()
	url := "sqlite://" + filepath.Join(b.TempDir(), "q.db") + "?poll=5ms"
	if kind == "kafka" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
		require.NoError(b, err)
		defer c.Close()
		url = "kafka://" + strings.Join(c.ListenAddrs(), ",") + "?partitions=4&max_wait=5ms"
	}
	br, err := brokers.Open(context.Background(), url, nil)
	require.NoError(b, err)
	defer br.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var processed atomic.Int64
	done := make(chan struct{})
	outSub, err := br.Subscriber("bench-counter")
	require.NoError(b, err)
	outs, err := outSub.Subscribe(ctx, "out")
	require.NoError(b, err)
	go func() {
		for m := range outs {
			m.Ack()
			if processed.Add(1) == int64(n) {
				close(done)
			}
		}
	}()

	file := filepath.Join(b.TempDir(), "flow.yaml")
	require.NoError(b, os.WriteFile(file, []byte(ledgerFlow), 0o644))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fl, err := flows.Loader{Deps: nodes.Deps{Logger: quiet}}.Load(file)
	require.NoError(b, err)
	st, err := state.OpenURL(ctx, stateURL)
	require.NoError(b, err)
	defer st.Close()
	e, err := flows.NewEngine(flows.Options{Broker: br, Logger: quiet, State: st}, fl)
	require.NoError(b, err)
	ectx, ecancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- e.Run(ectx) }()
	defer func() { ecancel(); <-errc }()
	<-e.Ready()

	start := time.Now()
	for i := range n {
		m := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf(`{"id":%d,"qty":%d,"price":2.5}`, i, i%7)))
		m.Metadata.Set(brokers.MetaPartitionKey, fmt.Sprint(i))
		require.NoError(b, br.Publisher().Publish("in", m))
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("processed %d of %d", processed.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
