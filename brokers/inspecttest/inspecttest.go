// Package inspecttest is the conformance suite of brokers.Inspector,
// run by every broker that implements it.
package inspecttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

// Run checks a broker's Inspector: counts and lags after a
// group consumed part of a topic, tails from the beginning and from now,
// and that tailing neither moves a group nor adds one.
func Run(t *testing.T, url string) {
	ctx := t.Context()
	b, err := brokers.Open(ctx, url, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	in, ok := b.(brokers.Inspector)
	require.True(t, ok, "broker has no Inspector")

	for i := 1; i <= 5; i++ {
		m := message.NewMessage(fmt.Sprintf("m-%d", i), fmt.Appendf(nil, `{"n":%d}`, i))
		m.Metadata.Set("source", "inspect-test")
		m.Metadata.Set(brokers.MetaPartitionKey, "one-key") // one partition: kept in order
		require.NoError(t, b.Publisher().Publish("insp.orders", m))
	}
	// Group "billing" consumes and acks two messages.
	sub, err := b.Subscriber("billing")
	require.NoError(t, err)
	sctx, stop := context.WithCancel(ctx)
	ch, err := sub.Subscribe(sctx, "insp.orders")
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		select {
		case m := <-ch:
			m.Ack()
		case <-time.After(30 * time.Second):
			t.Fatal("no message for the group")
		}
	}
	// The subscription stays open while the group's commits land (Kafka
	// commits marked offsets every second).
	var billing brokers.GroupInfo
	require.Eventually(t, func() bool { // the group's commit lands asynchronously
		topics, err := in.Topics(ctx)
		require.NoError(t, err)
		for _, ti := range topics {
			if ti.Name == "insp.orders" {
				assert.EqualValues(t, 5, ti.Messages)
				for _, g := range ti.Groups {
					if g.Name == "billing" {
						billing = g
						return g.Lag == 3
					}
				}
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "billing: %+v", &billing)
	stop()
	require.NoError(t, sub.Close())

	// From the beginning: every message, in order, with metadata.
	var got []brokers.Record
	errEnough := errors.New("enough")
	err = in.Tail(ctx, "insp.orders", true, func(r brokers.Record) error {
		got = append(got, r)
		if len(got) == 5 {
			return errEnough
		}
		return nil
	})
	require.ErrorIs(t, err, errEnough)
	for i, r := range got {
		assert.Equal(t, fmt.Sprintf("m-%d", i+1), r.Message.UUID)
		assert.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i+1), string(r.Message.Payload))
		assert.Equal(t, "inspect-test", r.Message.Metadata.Get("source"))
		assert.Equal(t, "insp.orders", r.Topic)
		assert.False(t, r.Time.IsZero())
		if i > 0 {
			assert.Greater(t, r.Offset, got[i-1].Offset)
		}
	}

	// From now: only what is published after the tail started. Publish
	// until the tail sees something (it starts asynchronously).
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var fresh []string
	done := make(chan error, 1)
	go func() {
		done <- in.Tail(tctx, "insp.orders", false, func(r brokers.Record) error {
			mu.Lock()
			fresh = append(fresh, r.Message.UUID)
			mu.Unlock()
			return nil
		})
	}()
	n := 0
	require.Eventually(t, func() bool {
		n++
		m := message.NewMessage(fmt.Sprintf("new-%d", n), []byte(`{}`))
		m.Metadata.Set(brokers.MetaPartitionKey, "one-key")
		require.NoError(t, b.Publisher().Publish("insp.orders", m))
		mu.Lock()
		defer mu.Unlock()
		return len(fresh) > 0
	}, 30*time.Second, 100*time.Millisecond)
	cancel()
	require.NoError(t, <-done, "a cancelled tail ends without error")
	mu.Lock()
	for _, id := range fresh {
		assert.Regexp(t, `^new-\d+$`, id, "old messages are not tailed without from-beginning")
	}
	mu.Unlock()

	// A topic that does not exist yet is waited for.
	tctx, cancel = context.WithCancel(ctx)
	defer cancel()
	seen := make(chan string, 1)
	go func() {
		done <- in.Tail(tctx, "insp.later", false, func(r brokers.Record) error {
			select {
			case seen <- r.Message.UUID:
			default:
			}
			return nil
		})
	}()
	k := 0
	require.Eventually(t, func() bool {
		k++
		require.NoError(t, b.Publisher().Publish("insp.later", message.NewMessage(fmt.Sprintf("later-%d", k), []byte(`{}`))))
		select {
		case id := <-seen:
			return assert.Regexp(t, `^later-\d+$`, id)
		default:
			return false
		}
	}, 30*time.Second, 100*time.Millisecond, "the tail did not see the topic created after it started")
	cancel()
	require.NoError(t, <-done)

	// Tailing moved no group and added none.
	topics, err := in.Topics(ctx)
	require.NoError(t, err)
	for _, ti := range topics {
		if ti.Name == "insp.orders" {
			assert.EqualValues(t, 5+n, ti.Messages)
			assert.Equal(t, []brokers.GroupInfo{{Name: "billing", Lag: 3 + int64(n)}}, ti.Groups)
		}
	}
}
