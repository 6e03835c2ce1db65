package flows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/brokers"
	_ "github.com/sluicehq/sluice/brokers/kafka"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

const benchFlow = `
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

// BenchmarkFlowThroughput reports messages/s through a 3-step flow
// (transform → switch → publish), publish and consume included, next to a
// bare Watermill router handler doing the same JSON work and publish on the
// same kind of broker in the same run, and their ratio. The two alternate
// over three rounds (engine first, then bare first, ...) and each reports
// its median, so drift on a noisy machine hits both alike.
func BenchmarkFlowThroughput(b *testing.B) {
	for _, kind := range []string{"mem", "sqlite"} {
		b.Run(kind, func(b *testing.B) {
			engine, bare := alternate(b, kind, max(b.N, 2000), 3, modeEngine, modeBare)
			b.ReportMetric(engine, "engine_msgs/s")
			b.ReportMetric(bare, "bare_msgs/s")
			b.ReportMetric(engine/bare, "ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// alternate measures modes x and y for rounds rounds, alternating which
// goes first so drift hits both alike, and returns their medians.
func alternate(b *testing.B, kind string, n, rounds int, x, y string) (float64, float64) {
	var xs, ys []float64
	for round := 0; round < rounds; round++ {
		if round%2 == 0 {
			xs = append(xs, measure(b, kind, n, x))
			ys = append(ys, measure(b, kind, n, y))
		} else {
			ys = append(ys, measure(b, kind, n, y))
			xs = append(xs, measure(b, kind, n, x))
		}
	}
	return median(xs), median(ys)
}

func brokerURL(b *testing.B, kind string) string {
	switch kind {
	case "mem":
		return "mem://?buffer=1024"
	case "kafka":
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
		require.NoError(b, err)
		b.Cleanup(c.Close)
		return "kafka://" + strings.Join(c.ListenAddrs(), ",") + "?partitions=1&max_wait=5ms"
	}
	return "sqlite://" + filepath.Join(b.TempDir(), "q.db") + "?poll=5ms"
}

// BenchmarkLedger reports messages/s through the 3-step flow with the
// completion ledger (a durable commit before each ack, shared by runs
// finishing together) next to the same engine recording runs without it,
// on the SQLite and Kafka brokers, five alternating rounds, medians.
func BenchmarkLedger(b *testing.B) {
	for _, kind := range []string{"sqlite", "kafka"} {
		b.Run(kind, func(b *testing.B) {
			w, wo := alternate(b, kind, max(b.N, 2000), 5, modeLedger, modeRuns)
			b.ReportMetric(w, "ledger_msgs/s")
			b.ReportMetric(wo, "no_ledger_msgs/s")
			b.ReportMetric(w/wo, "ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkKafkaFlowThroughput reports messages/s through the 3-step flow
// on Kafka (an in-process Kafka-protocol broker), publish and consume
// included, next to a raw sarama consumer group doing the same JSON work
// and producing with a sync producer, on the same kind of broker in the
// same run (alternating rounds, medians).
func BenchmarkKafkaFlowThroughput(b *testing.B) {
	n := max(b.N, 2000)
	var engines, raws []float64
	for round := 0; round < 3; round++ {
		engines = append(engines, measure(b, "kafka", n, modeEngine))
		raws = append(raws, measureRawSarama(b, n))
	}
	engine, raw := median(engines), median(raws)
	b.ReportMetric(engine, "engine_msgs/s")
	b.ReportMetric(raw, "sarama_msgs/s")
	b.ReportMetric(engine/raw, "ratio")
	b.ReportMetric(0, "ns/op")
}

type rawHandler struct {
	prod sarama.SyncProducer
	n    int
	done chan struct{}
	got  atomic.Int64
}

func (h *rawHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *rawHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *rawHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		var p map[string]any
		if err := json.Unmarshal(m.Value, &p); err != nil {
			return err
		}
		p["total"] = p["qty"].(float64) * p["price"].(float64)
		topic := "out"
		if p["qty"].(float64) < 0 {
			topic = "rejected"
		}
		data, _ := json.Marshal(p)
		if _, _, err := h.prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(data)}); err != nil {
			return err
		}
		s.MarkMessage(m, "")
		if h.got.Add(1) == int64(h.n) {
			close(h.done)
		}
	}
	return nil
}

// measureRawSarama publishes n messages with a sync producer while a raw
// consumer group transforms each and produces it to "out".
func measureRawSarama(b *testing.B, n int) float64 {
	b.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	require.NoError(b, err)
	defer c.Close()
	addrs := c.ListenAddrs()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.MaxWaitTime = 5 * time.Millisecond
	prod, err := sarama.NewSyncProducer(addrs, cfg)
	require.NoError(b, err)
	defer prod.Close()
	group, err := sarama.NewConsumerGroup(addrs, "raw", cfg)
	require.NoError(b, err)
	defer group.Close()
	h := &rawHandler{prod: prod, n: n, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: "in", Value: sarama.StringEncoder(`{"qty":1,"price":1}`)})
	require.NoError(b, err)
	h.n = n + 1 // the warm-up message above
	go func() {
		for ctx.Err() == nil {
			if err := group.Consume(ctx, []string{"in"}, h); err != nil {
				return
			}
		}
	}()
	for h.got.Load() == 0 { // wait for the group to be consuming (the warm-up message processed)
		select {
		case <-h.done:
		case <-time.After(10 * time.Millisecond):
		}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "in", Key: sarama.StringEncoder(fmt.Sprint(i)),
			Value: sarama.StringEncoder(fmt.Sprintf(`{"id":%d,"qty":%d,"price":2.5}`, i, i%7))})
		require.NoError(b, err)
	}
	select {
	case <-h.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("raw sarama processed %d of %d", h.got.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds()
}

// measure publishes n messages one Publish call each while a consumer
// processes them, and returns messages/s from the first publish to the n-th
// output.
// Modes of measure: a bare Watermill handler, the engine without a state
// database, with one recording runs only (NoLedger), and with the
// completion ledger (the default of `sluice run`).
const (
	modeBare   = "bare"
	modeEngine = "engine"
	modeRuns   = "runs"
	modeLedger = "ledger"
)

func measure(b *testing.B, kind string, n int, mode string) float64 {
	b.Helper()
	br, err := brokers.Open(context.Background(), brokerURL(b, kind), nil)
	require.NoError(b, err)
	defer br.Close()
	var processed atomic.Int64
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Count outputs on "out" the same way for both.
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

	ready := make(chan struct{})
	var stop func()
	if mode != modeBare {
		dir := b.TempDir()
		file := filepath.Join(dir, "flow.yaml")
		require.NoError(b, os.WriteFile(file, []byte(benchFlow), 0o644))
		fl, err := flows.Loader{Deps: nodes.Deps{Logger: quietLogger()}}.Load(file)
		require.NoError(b, err)
		opts := flows.Options{Broker: br, Logger: quietLogger(), NoLedger: mode == modeRuns}
		if mode == modeRuns || mode == modeLedger {
			st, err := state.Open(filepath.Join(dir, "state.db"))
			require.NoError(b, err)
			defer st.Close()
			opts.State = st
		}
		e, err := flows.NewEngine(opts, fl)
		require.NoError(b, err)
		ectx, ecancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- e.Run(ectx) }()
		<-e.Ready()
		close(ready)
		stop = func() { ecancel(); <-errc }
	} else {
		r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(b, err)
		sub, err := br.Subscriber("bare")
		require.NoError(b, err)
		pub := br.Publisher()
		r.AddConsumerHandler("bare", "in", sub, func(m *message.Message) error {
			var p map[string]any
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				return err
			}
			p["total"] = p["qty"].(float64) * p["price"].(float64)
			if p["qty"].(float64) < 0 {
				return pub.Publish("rejected", m)
			}
			data, err := json.Marshal(p)
			if err != nil {
				return err
			}
			return pub.Publish("out", message.NewMessage(watermill.NewUUID(), data))
		})
		go func() { _ = r.Run(ctx) }()
		<-r.Running()
		close(ready)
		stop = func() { _ = r.Close() }
	}
	<-ready
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		m := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf(`{"id":%d,"qty":%d,"price":2.5}`, i, i%7)))
		require.NoError(b, br.Publisher().Publish("in", m))
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("processed %d of %d", processed.Load(), n)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	return float64(n) / elapsed.Seconds()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
