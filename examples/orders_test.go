package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
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
)

// orderEvent is one line of the replayed stream.
type orderEvent struct {
	MsgID   string  `json:"msg_id"`
	OrderID string  `json:"order_id"`
	Type    string  `json:"type"`
	Amount  float64 `json:"amount"`
}

// TestOrders follows examples/orders/README.md: a realistic event stream,
// with out-of-order, repeated and redelivered events, is published with
// `sluice publish --ndjson`; every order's final state and history, the
// fan-out topics and the dead letters are checked.
func TestOrders(t *testing.T) {
	dir := t.TempDir()
	ordersScenario(t, dir, "sqlite://"+filepath.Join(dir, ".sluice", "queue.db"))
}

// TestOrdersOnKafka replays the same stream through Kafka (four
// partitions, in-process Kafka protocol): partitions are consumed
// concurrently, and each order's events stay in order because they are
// keyed by order id.
func TestOrdersOnKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("Kafka consumer groups take seconds to settle")
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	require.NoError(t, err)
	defer kafka.Close()
	ordersScenario(t, t.TempDir(), "kafka://"+strings.Join(kafka.ListenAddrs(), ",")+"?max_wait=20ms&partitions=4")
}

func ordersScenario(t *testing.T, dir, brokerURL string) {
	t.Setenv("SLUICE_BROKER", brokerURL)
	flow, err := filepath.Abs("orders")
	require.NoError(t, err)
	run(t, dir, flow)

	events, want, refused := orderStream()
	var lines []string
	for _, e := range events {
		b, _ := json.Marshal(e)
		lines = append(lines, string(b))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "events.ndjson"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	out := cli(t, dir, "publish", "--ndjson", "--id-field", "msg_id", "--key-field", "order_id", "orders", "@events.ndjson")
	assert.Contains(t, out, fmt.Sprintf("published %d messages to orders", len(events)))

	// Every message ran: applied, dead-lettered, or recognised as delivered twice.
	var runs []map[string]any
	require.Eventually(t, func() bool {
		runs = nil
		for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "runs", "--flow", "orders", "--json", "--limit", "1000")), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil {
				runs = append(runs, r)
			}
		}
		return len(runs) == len(events)
	}, 30*time.Second, 50*time.Millisecond)
	status := map[string]int{}
	for _, r := range runs {
		status[r["status"].(string)]++
	}
	assert.Equal(t, map[string]int{"succeeded": len(events) - 1 - len(refused), "dead_lettered": len(refused), "duplicate": 1}, status)

	// Final states and full histories.
	for order, states := range want {
		var got struct {
			State   string `json:"state"`
			Version int    `json:"version"`
			History []struct {
				From, To, Event, Input string
			} `json:"history"`
		}
		require.NoError(t, json.Unmarshal([]byte(cli(t, dir, "state", "get", "order", order, "--json")), &got), order)
		assert.Equal(t, states[len(states)-1], got.State, order)
		assert.Equal(t, len(states), got.Version, order)
		var path []string
		for _, h := range got.History {
			path = append(path, h.To)
		}
		assert.Equal(t, states, path, order)
	}
	assert.Contains(t, cli(t, dir, "state", "list", "order", "--in", "delivered"), "o-20")

	// Dead letters carry the reason, naming the order, its state and the event.
	var reasons []string
	for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "dlq", "list", "--flow", "orders", "--json")), "\n") {
		var dl map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &dl))
		reasons = append(reasons, dl["error"].(string))
	}
	for _, r := range refused {
		assert.Contains(t, reasons, r)
	}
	assert.Len(t, reasons, len(refused))

	// Routing and fan-out.
	br, err := brokers.Open(context.Background(), brokerURL, nil)
	require.NoError(t, err)
	defer br.Close()
	count := func(topic string, n int) map[string]int {
		t.Helper()
		sub, err := br.Subscriber("orders-test-" + topic)
		require.NoError(t, err)
		defer sub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ch, err := sub.Subscribe(ctx, topic)
		require.NoError(t, err)
		got := map[string]int{}
		for i := 0; i < n; i++ {
			select {
			case m := <-ch:
				m.Ack()
				var p map[string]any
				require.NoError(t, json.Unmarshal(m.Payload, &p))
				got[p["order_id"].(string)+" "+p["state"].(string)]++
			case <-ctx.Done():
				t.Fatalf("%s: %d of %d messages", topic, i, n)
			}
		}
		return got
	}
	paid := 20 + 1 + 1 + 1 // the happy path, o-24, o-25, o-26
	billing := count("billing", paid)
	assert.Len(t, billing, paid)
	assert.Equal(t, 1, billing["o-05 paid"])
	assert.Len(t, count("warehouse", paid), paid)
	review := count("review", 4)
	assert.Equal(t, map[string]int{"o-05 paid": 1, "o-10 paid": 1, "o-15 paid": 1, "o-20 paid": 1}, review)
	notes := count("notifications", 20+3+1+1) // shipped, cancelled, refunded, o-25 shipped
	assert.Equal(t, 1, notes["o-21 cancelled"])
	assert.Equal(t, 1, notes["o-24 refunded"])
	assert.Equal(t, 1, notes["o-25 shipped"])
}

// orderStream is the realistic stream of TestOrders: the events, each
// order's states in order, and the reason of each refused event.
func orderStream() (events []orderEvent, want map[string][]string, refused map[string]string) {
	n := 0
	ev := func(order, typ string, amount float64) {
		n++
		events = append(events, orderEvent{fmt.Sprintf("m-%04d", n), order, typ, amount})
	}
	want = map[string][]string{} // order → its states, in order
	for i := 1; i <= 20; i++ {   // the happy path; every fifth order is large
		o := fmt.Sprintf("o-%02d", i)
		amount := float64(10 * i)
		if i%5 == 0 {
			amount = 5000
		}
		ev(o, "create", 0)
		ev(o, "pay", amount)
		ev(o, "ship", 0)
		ev(o, "deliver", 0)
		want[o] = []string{"created", "paid", "shipped", "delivered"}
	}
	for i := 21; i <= 23; i++ { // cancelled before paying
		o := fmt.Sprintf("o-%02d", i)
		ev(o, "create", 0)
		ev(o, "cancel", 0)
		want[o] = []string{"created", "cancelled"}
	}
	ev("o-24", "create", 0) // paid, then refunded
	ev("o-24", "pay", 30)
	ev("o-24", "refund", 0)
	want["o-24"] = []string{"created", "paid", "refunded"}
	ev("o-25", "create", 0) // shipped before it was paid: that event is refused
	ev("o-25", "ship", 0)
	ev("o-25", "pay", 40)
	ev("o-25", "ship", 0)
	want["o-25"] = []string{"created", "paid", "shipped"}
	ev("o-26", "create", 0) // paid twice (two messages): the second is refused
	ev("o-26", "pay", 50)
	ev("o-26", "pay", 50)
	want["o-26"] = []string{"created", "paid"}
	ev("o-27", "pay", 60) // paid before it exists, then created: not paid
	ev("o-27", "create", 0)
	want["o-27"] = []string{"created"}
	ev("o-28", "create", 0) // a zero payment fails the guard
	ev("o-28", "pay", 0)
	want["o-28"] = []string{"created"}
	ev("o-01", "cancel", 0) // anything after delivery is refused
	// The broker delivers one message twice (same id): it applies once.
	events = append(events, events[0])
	refused = map[string]string{
		"o-25": `order o-25 is created: event "ship" is not allowed there (allowed: cancel, expire, pay)`,
		"o-26": `order o-26 is paid: event "pay" is not allowed there (allowed: cancel, refund, ship)`,
		"o-27": `order o-27 is new: event "pay" is not allowed there (allowed: create)`,
		"o-28": `order o-28 in state created: event "pay" rejected by its guard`,
		"o-01": `order o-01 is delivered, a terminal state: event "cancel" not applied`,
	}

	return events, want, refused
}
