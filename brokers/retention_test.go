package brokers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

// The embedded queue deletes old messages every group has acked, and
// never one a group still needs.
func TestSQLiteRetentionKeepsWhatAGroupNeeds(t *testing.T) {
	dir := t.TempDir()
	url := "sqlite://" + filepath.Join(dir, "queue.db") + "?poll=10ms&retention=0"
	b, err := brokers.Open(t.Context(), url, nil)
	require.NoError(t, err)
	defer b.Close()
	pub := func(topic string, n int) {
		for i := 0; i < n; i++ {
			require.NoError(t, b.Publisher().Publish(topic, message.NewMessage(fmt.Sprintf("%s-%d", topic, i), []byte(`{}`))))
		}
	}
	pub("orders", 10)
	pub("unread", 4)
	// Group "fast" consumes all 10, group "slow" the first 6.
	consumeN := func(group string, n int) {
		sub, err := b.Subscriber(group)
		require.NoError(t, err)
		defer sub.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		ch, err := sub.Subscribe(ctx, "orders")
		require.NoError(t, err)
		for i := 0; i < n; i++ {
			select {
			case m := <-ch:
				m.Ack()
			case <-ctx.Done():
				t.Fatalf("%s: %d of %d", group, i, n)
			}
		}
	}
	consumeN("fast", 10)
	consumeN("slow", 6)

	p := b.(brokers.Pruner)
	n, err := p.Prune(t.Context(), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, n, "nothing is older than the retention")
	// The slow group's ack of its sixth message may land just after its
	// handler returned: wait for it.
	require.Eventually(t, func() bool {
		n, err = p.Prune(t.Context(), time.Now().Add(time.Second))
		require.NoError(t, err)
		return n > 0
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, int64(6+4), n, "the 6 both groups acked, and the unread topic's 4")

	// The slow group still gets the rest, in order.
	sub, err := b.Subscriber("slow")
	require.NoError(t, err)
	defer sub.Close()
	ch, err := sub.Subscribe(t.Context(), "orders")
	require.NoError(t, err)
	for i := 6; i < 10; i++ {
		select {
		case m := <-ch:
			assert.Equal(t, fmt.Sprintf("orders-%d", i), m.UUID)
			m.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not delivered after pruning", i)
		}
	}
}

func TestSQLiteRetentionURL(t *testing.T) {
	_, err := brokers.Open(context.Background(), "sqlite://q.db?retention=forever", nil)
	require.ErrorContains(t, err, "retention must be a non-negative duration")
}

// TestSQLiteAckBeforeTheSubscriptionEnds: a message acked just before its
// subscription's context ends stays acked: the group's next subscriber
// gets the message after it, every time (watermill-sql alone picks at
// random between the ack and the context's end when both are ready).
func TestSQLiteAckBeforeTheSubscriptionEnds(t *testing.T) {
	b, err := brokers.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "queue.db")+"?poll=10ms", nil)
	require.NoError(t, err)
	defer b.Close()
	next := func(sub message.Subscriber, ctx context.Context, topic string) *message.Message {
		ch, err := sub.Subscribe(ctx, topic)
		require.NoError(t, err)
		select {
		case m := <-ch:
			return m
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing delivered", topic)
			return nil
		}
	}
	// Busy goroutines make the scheduler delay the subscriber's goroutine
	// between handing a message out and waiting for its ack, where the
	// ack and the context's end can both be ready.
	busy, stopBusy := context.WithCancel(t.Context())
	defer stopBusy()
	for range 2 * runtime.GOMAXPROCS(0) {
		go func() {
			for busy.Err() == nil {
				runtime.Gosched()
			}
		}()
	}
	for i := range 100 {
		topic := fmt.Sprint("t", i)
		for _, id := range []string{"first", "second"} {
			require.NoError(t, b.Publisher().Publish(topic, message.NewMessage(id, []byte(`{}`))))
		}
		sub, err := b.Subscriber("g")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		m := next(sub, ctx, topic)
		require.Equal(t, "first", m.UUID)
		m.Ack()
		cancel()
		require.NoError(t, sub.Close())

		sub, err = b.Subscriber("g")
		require.NoError(t, err)
		m = next(sub, t.Context(), topic)
		assert.Equal(t, "second", m.UUID, "round %d: the acked message came again", i)
		m.Ack()
		require.NoError(t, sub.Close())
	}
}
