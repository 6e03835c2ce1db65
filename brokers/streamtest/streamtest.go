// Package streamtest is the conformance suite of brokers.Streamer: every
// broker that streams runs it against a real backend.
package streamtest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

// Opener opens the broker under test; every call opens a new connection to
// the same backend (what a restarted process would see).
type Opener func(t *testing.T) brokers.Broker

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	t.Run("OrderAndPositions", func(t *testing.T) { testOrder(t, open) })
	t.Run("CommitResumes", func(t *testing.T) { testResume(t, open) })
	t.Run("CommitAfterClose", func(t *testing.T) { testCommitAfterClose(t, open) })
	t.Run("GroupsAreIndependent", func(t *testing.T) { testGroups(t, open) })
}

func streamer(t *testing.T, b brokers.Broker) brokers.Streamer {
	s, ok := b.(brokers.Streamer)
	require.True(t, ok, "%T does not implement brokers.Streamer", b)
	return s
}

// groups are the consumer groups the suite uses.
var groups = []string{"g", "a", "b"}

// topicName returns a new topic. Brokers whose groups only receive what
// is published after they exist (brokers.GroupInitializer) get the suite's
// groups set up on it first, as a flow's start does.
func topicName(t *testing.T, b brokers.Broker) string {
	topic := "stream-" + watermill.NewShortUUID()
	if gi, ok := b.(brokers.GroupInitializer); ok {
		for _, g := range groups {
			require.NoError(t, gi.InitializeGroup(t.Context(), topic, g))
		}
	}
	return topic
}

// publish publishes n messages numbered from first; key(i) is the
// partition key ("" for none).
func publish(t *testing.T, b brokers.Broker, topic string, first, n int, key func(int) string) []string {
	t.Helper()
	var ids []string
	var msgs []*message.Message
	for i := first; i < first+n; i++ {
		m := message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))
		if k := key(i); k != "" {
			m.Metadata.Set(brokers.MetaPartitionKey, k)
		}
		msgs = append(msgs, m)
		ids = append(ids, m.UUID)
	}
	require.NoError(t, b.Publisher().Publish(topic, msgs...))
	return ids
}

func oneKey(int) string { return "one" }

// consumer runs Stream in the background, handing every message with its
// stream to got; stop ends it and returns Stream's error.
type consumer struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func consume(t *testing.T, b brokers.Broker, topic, group string, got func(brokers.Stream, *message.Message)) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	c := &consumer{cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- streamer(t, b).Stream(ctx, topic, group, func(s brokers.Stream) error {
			for m := range s.Messages() {
				c.mu.Lock()
				got(s, m)
				c.mu.Unlock()
			}
			return nil
		})
	}()
	t.Cleanup(cancel)
	return c
}

func (c *consumer) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case err := <-c.done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Stream did not return after its context ended")
	}
}

func (c *consumer) locked(f func()) { c.mu.Lock(); defer c.mu.Unlock(); f() }

const wait = 30 * time.Second

func testOrder(t *testing.T, open Opener) {
	b := open(t)
	topic := topicName(t, b)
	before := time.Now().Add(-time.Second)
	ids := publish(t, b, topic, 0, 300, func(i int) string { return fmt.Sprintf("k%d", i%5) })
	after := time.Now().Add(time.Second)

	seen := map[string]bool{}
	lastOffset := map[int32]int64{}
	lastOfKey := map[string]int{}
	var problems []string
	c := consume(t, b, topic, "g", func(s brokers.Stream, m *message.Message) {
		seen[m.UUID] = true
		p, off, ok := brokers.Position(m)
		if !ok || p != s.Partition() {
			problems = append(problems, fmt.Sprintf("%s: position %d/%d ok=%v on stream %d", m.UUID, p, off, ok, s.Partition()))
		}
		if prev, ok := lastOffset[p]; ok && off <= prev {
			problems = append(problems, fmt.Sprintf("partition %d: offset %d after %d", p, off, prev))
		}
		lastOffset[p] = off
		if ts, ok := brokers.Timestamp(m); !ok || ts.Before(before) || ts.After(after) {
			problems = append(problems, fmt.Sprintf("%s: timestamp %v ok=%v", m.UUID, ts, ok))
		}
		n, _ := strconv.Atoi(string(m.Payload))
		k := m.Metadata.Get(brokers.MetaPartitionKey)
		if prev, ok := lastOfKey[k]; ok && n <= prev {
			problems = append(problems, fmt.Sprintf("key %s: %d after %d", k, n, prev))
		}
		lastOfKey[k] = n
	})
	require.Eventually(t, func() bool {
		n := 0
		c.locked(func() { n = len(seen) })
		return n == len(ids)
	}, wait, 10*time.Millisecond)
	c.stop(t)
	assert.Empty(t, problems)
}

func testResume(t *testing.T, open Opener) {
	b := open(t)
	topic := topicName(t, b)
	ids := publish(t, b, topic, 0, 20, oneKey)

	var got []string
	c := consume(t, b, topic, "g", func(s brokers.Stream, m *message.Message) {
		got = append(got, m.UUID)
		if len(got) == 10 {
			require.NoError(t, s.Commit(context.Background(), m))
		}
	})
	require.Eventually(t, func() bool { n := 0; c.locked(func() { n = len(got) }); return n == 20 }, wait, 10*time.Millisecond)
	c.stop(t)
	require.Equal(t, ids, got)

	// Another process of the group starts after the committed message.
	b2 := open(t)
	got = nil
	c = consume(t, b2, topic, "g", func(s brokers.Stream, m *message.Message) {
		got = append(got, m.UUID)
		if len(got) == 10 {
			require.NoError(t, s.Commit(context.Background(), m))
		}
	})
	require.Eventually(t, func() bool { n := 0; c.locked(func() { n = len(got) }); return n == 10 }, wait, 10*time.Millisecond)
	more := publish(t, b2, topic, 20, 1, oneKey)
	require.Eventually(t, func() bool { n := 0; c.locked(func() { n = len(got) }); return n == 11 }, wait, 10*time.Millisecond)
	c.stop(t)
	assert.Equal(t, append(ids[10:], more...), got, "after a commit of the 10th message, the 11th comes first")
}

func testCommitAfterClose(t *testing.T, open Opener) {
	b := open(t)
	topic := topicName(t, b)
	publish(t, b, topic, 0, 5, oneKey)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		mu    sync.Mutex // fn runs once per partition, concurrently
		n     int
		ended error
	)
	errc := make(chan error, 1)
	go func() {
		errc <- streamer(t, b).Stream(ctx, topic, "g", func(s brokers.Stream) error {
			var last *message.Message
			for m := range s.Messages() {
				mu.Lock()
				last, n = m, n+1
				if n == 5 {
					cancel() // shutdown while holding an uncommitted batch
				}
				mu.Unlock()
			}
			if last == nil {
				return nil
			}
			mu.Lock()
			ended = s.Context().Err()
			mu.Unlock()
			return s.Commit(context.Background(), last) // the batch flushed on shutdown
		})
	}()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(wait):
		t.Fatal("Messages did not close after the context ended")
	}
	require.Equal(t, 5, n)
	assert.Error(t, ended, "the stream's context ends with the stream")

	var again []string
	c := consume(t, open(t), topic, "g", func(_ brokers.Stream, m *message.Message) { again = append(again, string(m.Payload)) })
	publish(t, b, topic, 5, 1, oneKey)
	require.Eventually(t, func() bool { k := 0; c.locked(func() { k = len(again) }); return k >= 1 }, wait, 10*time.Millisecond)
	c.stop(t)
	assert.Equal(t, []string{"5"}, again, "messages committed at shutdown are not delivered again")
}

func testGroups(t *testing.T, open Opener) {
	b := open(t)
	topic := topicName(t, b)
	ids := publish(t, b, topic, 0, 10, oneKey)
	for _, g := range []string{"a", "b"} {
		var got []string
		c := consume(t, b, topic, g, func(s brokers.Stream, m *message.Message) {
			got = append(got, m.UUID)
			require.NoError(t, s.Commit(context.Background(), m))
		})
		require.Eventually(t, func() bool { n := 0; c.locked(func() { n = len(got) }); return n == len(ids) }, wait, 10*time.Millisecond)
		c.stop(t)
		assert.Equal(t, ids, got, "group %s", g)
	}
}
