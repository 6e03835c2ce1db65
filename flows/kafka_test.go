package flows_test

import (
	"context"
	"fmt"
	"github.com/IBM/sarama"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/brokers"
	_ "github.com/sluicehq/sluice/brokers/kafka"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// TestTwoEnginesShareAKafkaGroup runs two engines with the same flow on one
// Kafka cluster: they split the topic's partitions, and together every
// input produces its output (duplicates, if a rebalance redelivers, carry
// the same derived message id).

// kafkaURL starts an in-process Kafka-protocol cluster (kfake) for the test
// and returns a broker URL whose topics get the given partitions.
func kafkaURL(t testing.TB, partitions int) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return fmt.Sprintf("kafka://%s?partitions=%d&max_wait=20ms", strings.Join(c.ListenAddrs(), ","), partitions)
}

// kafkaAddrs returns the broker addresses of a kafka:// URL.
func kafkaAddrs(url string) []string {
	hosts, _, _ := strings.Cut(strings.TrimPrefix(url, "kafka://"), "?")
	return strings.Split(hosts, ",")
}

func TestTwoEnginesShareAKafkaGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("rebalances take seconds")
	}
	url := kafkaURL(t, 4)
	flow := `
name: relay
on: {topic: jobs}
steps:
  - node: publish
    with: {topic: relayed, payload: 'payload'}
`
	a := startWith(t, t.TempDir(), url, flow, nil)
	b := startWith(t, t.TempDir(), url, flow, nil)

	ran := func(h *harness) int {
		require.NoError(t, h.state.Flush(t.Context()))
		runs, err := h.state.Runs(t.Context(), state.Filter{Flow: "relay", Limit: 100000})
		require.NoError(t, err)
		return len(runs)
	}
	// Publish until both engines have taken part (the group has settled),
	// then a known batch more.
	n := 0
	pub := func(count int) {
		for i := 0; i < count; i++ {
			m := message.NewMessage(fmt.Sprintf("job-%d", n), []byte(fmt.Sprint(n)))
			m.Metadata.Set(brokers.MetaPartitionKey, fmt.Sprintf("key-%d", n))
			require.NoError(t, a.broker.Publisher().Publish("jobs", m))
			n++
		}
	}
	require.Eventually(t, func() bool {
		pub(10)
		return ran(a) > 0 && ran(b) > 0
	}, 60*time.Second, 200*time.Millisecond, "both engines should get partitions")
	pub(200)
	if testing.Verbose() {
		runs, _ := a.state.Runs(t.Context(), state.Filter{Limit: 3})
		for _, r := range runs {
			t.Logf("run %s %s %s", r.Status, r.Step, r.Error)
		}
	}

	out := a.consume("relayed", n)
	ids := map[string]bool{}
	values := map[string]bool{}
	for _, m := range out {
		ids[m.UUID] = true
		values[string(m.Payload)] = true
	}
	for i := 0; i < n; i++ {
		assert.True(t, values[fmt.Sprint(i)], "input %d has its output", i)
	}
	assert.Len(t, ids, n, "one output id per input")
	assert.GreaterOrEqual(t, ran(a)+ran(b), n)
}

// TestKafkaPoisonMessageIsDeadLetteredWithItsPosition: a message that
// always fails is retried the flow's attempts, then dead-lettered with its
// partition and offset; it is not redelivered in a loop, and the messages
// behind it are processed.
func TestKafkaPoisonMessageIsDeadLetteredWithItsPosition(t *testing.T) {
	url := kafkaURL(t, 1)
	h := startWith(t, t.TempDir(), url, `
name: strict
on: {topic: orders}
retry: {max_attempts: 3, backoff: 1ms}
steps:
  - node: transform
    with: {set: {total: 'payload.qty * 2'}}
  - node: publish
    with: {topic: priced}
`, nil)
	h.publish("orders", `{"qty": 1}`)
	poison := h.publish("orders", `{"qty": "many"}`)
	for i := 2; i <= 20; i++ {
		h.publish("orders", fmt.Sprintf(`{"qty": %d}`, i))
	}
	assert.Len(t, h.consume("priced", 20), 20, "the rest flows past the poison message")
	dl := h.consume("strict.dlq", 1)[0]
	assert.Equal(t, poison, dl.Metadata.Get(flows.MetaSourceID))
	assert.Equal(t, "0", dl.Metadata.Get(flows.MetaSourcePartition))
	assert.Equal(t, "1", dl.Metadata.Get(flows.MetaSourceOffset), "the second record of the partition")
	assert.Equal(t, poison, dl.Metadata.Get(flows.MetaInput))
	first, err := time.Parse(time.RFC3339Nano, dl.Metadata.Get(flows.MetaFirstFailedAt))
	require.NoError(t, err)
	last, err := time.Parse(time.RFC3339Nano, dl.Metadata.Get(flows.MetaFailedAt))
	require.NoError(t, err)
	assert.False(t, last.Before(first))

	runs := h.waitRuns(state.Filter{Flow: "strict", Input: poison}, 1)
	require.Len(t, runs, 1, "dead-lettered once, not looped")
	assert.Equal(t, state.StatusDeadLettered, runs[0].Status)
}

// TestKafkaLongRunNotRedeliveredOnRebalance: a run still going when a
// second engine joins the group (a rebalance) is not handed to the new
// member: Kafka waits for the running handler, and the input runs once.
func TestKafkaLongRunNotRedeliveredOnRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("rebalances take seconds")
	}
	url := kafkaURL(t, 1)
	var calls atomic.Int64
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.long", Summary: "a long step",
		New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) {
			return countedGate{&calls, g}, nil
		},
	}))
	flow := `
name: long
on: {topic: work}
steps:
  - node: test.long
  - node: publish
    with: {topic: finished}
`
	a := startWith(t, t.TempDir(), url, flow, reg)
	a.publish("work", `{"n": 1}`)
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not start")
	}
	// A second member joins while the run is in its step.
	startWith(t, t.TempDir(), url, flow, reg)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	admin, err := sarama.NewClusterAdmin(kafkaAddrs(url), cfg)
	require.NoError(t, err)
	defer admin.Close()
	require.Eventually(t, func() bool { // the group is rebalancing around the running step
		groups, err := admin.DescribeConsumerGroups([]string{"long"})
		if err != nil || len(groups) == 0 {
			return false
		}
		t.Logf("group state %s, %d members", groups[0].State, len(groups[0].Members))
		return groups[0].State != "Stable"
	}, 30*time.Second, 20*time.Millisecond)
	close(g.release)
	out := a.consume("finished", 1)
	assert.EqualValues(t, 1, payloadOf(t, out[0])["n"])
	// A message published now is processed by whichever member has the
	// partition; the first input still ran once.
	a.publish("work", `{"n": 2}`)
	a.consumeAs("check", "finished", 2)
	assert.EqualValues(t, 2, calls.Load(), "each input's step ran once")
}

// countedGate counts its calls and waits at the gate (released gates let
// every later call through).
type countedGate struct {
	calls *atomic.Int64
	g     *gate
}

func (c countedGate) Process(ctx context.Context, env *nodes.Envelope) error {
	c.calls.Add(1)
	return c.g.Process(ctx, env)
}

// TestKafkaRecordsFromOtherProducers: records produced without Watermill's
// id header (any other Kafka client) each get their position as identity:
// all are processed, none mistaken for a repeat of another.
func TestKafkaRecordsFromOtherProducers(t *testing.T) {
	url := kafkaURL(t, 1)
	h := startWith(t, t.TempDir(), url, `
name: external
on: {topic: clicks}
steps:
  - node: publish
    with: {topic: counted}
`, nil)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(kafkaAddrs(url), cfg)
	require.NoError(t, err)
	defer prod.Close()
	for i := 0; i < 3; i++ {
		_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "clicks", Value: sarama.StringEncoder(`{"click": 1}`)})
		require.NoError(t, err)
	}
	out := h.consume("counted", 3)
	assert.Len(t, out, 3)
	runs := h.waitRuns(state.Filter{Flow: "external", Status: state.StatusSucceeded}, 3)
	inputs := map[string]bool{}
	for _, r := range runs {
		inputs[r.Input] = true
	}
	assert.Equal(t, map[string]bool{"kafka:clicks/0/0": true, "kafka:clicks/0/1": true, "kafka:clicks/0/2": true}, inputs)
}

func TestKafkaArchivePerPartition(t *testing.T) {
	url := kafkaURL(t, 3)
	h := startWith(t, t.TempDir(), url, strings.Replace(archiveFlow, "max_count: 100,", "max_count: 50,", 1), nil)
	publishLogs(t, h.broker, "logs", 0, 300, func(i int) string { return fmt.Sprintf("host-%d", i%7) })

	var objs map[string][]string
	require.Eventually(t, func() bool { objs = archived(t, h.store, "archive"); return lineCount(objs) >= 300 }, 30*time.Second, 50*time.Millisecond)
	seen := map[int]int{}
	byPartition := map[string]int{}
	for k, ns := range numbers(t, objs) {
		var p, off int
		_, err := fmt.Sscanf(k[strings.LastIndex(k, "/")+1:], "part-%d-%d.ndjson.gz", &p, &off)
		require.NoError(t, err, k)
		require.Less(t, off, 300)
		byPartition[fmt.Sprint(p)] += len(ns)
		for _, n := range ns {
			seen[n]++
		}
	}
	assert.Len(t, seen, 300)
	for n, c := range seen {
		assert.Equal(t, 1, c, "line %d", n)
	}
	assert.Len(t, byPartition, 3, "each partition writes its own objects")
	assert.Len(t, h.consume("alerts", 30), 30)
}

// Two engines share a Kafka archive flow; the second joins midway. The
// rebalance waits for the first's open batches to be written and committed,
// so every line is archived exactly once.
func TestKafkaArchiveRebalanceWritesEachLineOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("rebalances take seconds")
	}
	url := kafkaURL(t, 4)
	buckets := "fs://" + filepath.Join(t.TempDir(), "buckets")
	flow := strings.Replace(archiveFlow, "max_count: 100, max_wait: 300ms", "max_count: 200, max_wait: 1h", 1)
	a := startOn(t, t.TempDir(), url, buckets, flow, nil)
	key := func(i int) string { return fmt.Sprintf("host-%d", i%13) }
	publishLogs(t, a.broker, "logs", 0, 3000, key)
	require.Eventually(t, func() bool {
		return a.counter("sluice_messages_received_total", map[string]string{"flow": "logs"}) == 3000
	}, 30*time.Second, 10*time.Millisecond)

	// B joins: A's partitions are revoked, their open batches (max_wait is
	// an hour) written and committed before B may take any.
	b := startOn(t, t.TempDir(), url, buckets, flow, nil)
	publishLogs(t, b.broker, "logs", 3000, 3000, key)
	received := func() float64 {
		return a.counter("sluice_messages_received_total", map[string]string{"flow": "logs"}) +
			b.counter("sluice_messages_received_total", map[string]string{"flow": "logs"})
	}
	require.Eventually(t, func() bool { return received() >= 6000 }, 60*time.Second, 20*time.Millisecond)
	a.stop()
	b.stop() // both write what they hold
	seen := map[int]int{}
	total := 0
	for _, ns := range numbers(t, archived(t, a.store, "archive")) {
		for _, n := range ns {
			seen[n]++
			total++
		}
	}
	assert.Len(t, seen, 6000, "no line lost")
	assert.Equal(t, 6000, total, "no line archived twice")
	assert.Equal(t, float64(6000), received(), "no line consumed twice: every batch was committed before its partition moved")
}
