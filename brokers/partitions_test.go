package brokers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

// consumePartitions reads from every partition until every id of want has
// arrived (others may come too: redeliveries), recording per-key order.
func consumePartitions(t *testing.T, subs []message.Subscriber, topic string, want map[string]bool) (seen map[string]int, order map[string][]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen, order = map[string]int{}, map[string][]int{}
	done := make(chan struct{})
	missing := len(want)
	for _, s := range subs {
		ch, err := s.Subscribe(ctx, topic)
		require.NoError(t, err)
		go func() {
			for m := range ch {
				mu.Lock()
				seen[m.UUID]++
				if want[m.UUID] && seen[m.UUID] == 1 {
					missing--
				}
				var n int
				fmt.Sscanf(string(m.Payload), "%d", &n)
				k := m.Metadata.Get(brokers.MetaPartitionKey)
				order[k] = append(order[k], n)
				if missing == 0 {
					select {
					case <-done:
					default:
						close(done)
					}
				}
				mu.Unlock()
				m.Ack()
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d messages missing", missing, len(want))
	}
	for _, s := range subs {
		require.NoError(t, s.Close())
	}
	mu.Lock()
	defer mu.Unlock()
	return seen, order
}

func TestSQLitePartitions(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "q.db") + "?poll=5ms"
	b, err := brokers.Open(t.Context(), url, nil)
	require.NoError(t, err)
	defer b.Close()
	p, ok := b.(brokers.Partitioner)
	require.True(t, ok)

	ids := func(from, to int) map[string]bool {
		m := map[string]bool{}
		for i := from; i < to; i++ {
			m[fmt.Sprintf("m-%d", i)] = true
		}
		return m
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			m := message.NewMessage(fmt.Sprintf("m-%d", i), []byte(fmt.Sprint(i)))
			m.Metadata.Set(brokers.MetaPartitionKey, fmt.Sprintf("k%d", i%7))
			require.NoError(t, b.Publisher().Publish("jobs", m))
		}
	}
	publish(0, 200)
	subs, err := p.Partitions(t.Context(), "jobs", "flow", 3)
	require.NoError(t, err)
	seen, order := consumePartitions(t, subs, "jobs", ids(0, 200))
	assert.Len(t, seen, 200)
	for k, ns := range order {
		assert.IsIncreasing(t, ns, "messages of key %s stay in order", k)
	}

	// Fewer partitions next run: nothing lost; what may come again is only
	// what followed the slowest old partition's last ack.
	publish(200, 300)
	subs, err = p.Partitions(t.Context(), "jobs", "flow", 2)
	require.NoError(t, err)
	seen, order = consumePartitions(t, subs, "jobs", ids(200, 300))
	for i := 200; i < 300; i++ {
		assert.Contains(t, seen, fmt.Sprintf("m-%d", i))
	}
	for k, ns := range order {
		assert.IsIncreasing(t, ns, "messages of key %s stay in order", k)
	}
	for id := range seen {
		var n int
		fmt.Sscanf(id, "m-%d", &n)
		assert.GreaterOrEqual(t, n, 190, "only messages near the change come again, not %s", id)
	}
}
