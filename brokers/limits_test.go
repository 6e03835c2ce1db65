package brokers_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

func TestValidateTopic(t *testing.T) {
	for _, ok := range []string{"orders", "a", "sluice.bucket.uploads", "flow.dlq", "A-b_c:d$e", strings.Repeat("t", 200)} {
		assert.NoError(t, brokers.ValidateTopic(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", strings.Repeat("t", 201), "with space", "slash/topic", "quote\"", "naïve", "nul\x00", "bidi\u202e"} {
		assert.ErrorIs(t, brokers.ValidateTopic(bad), brokers.ErrInvalidTopic, "%q", bad)
	}
}

// Every broker refuses bad topics and oversized messages on publish, with
// the limit in the error, and bad topics on subscribe.
func TestBrokersRefuseBadTopicsAndOversizedMessages(t *testing.T) {
	for name, url := range map[string]string{
		"mem":    "mem://?max_message_bytes=100",
		"sqlite": "sqlite://" + filepath.Join(t.TempDir(), "queue.db") + "?max_message_bytes=100",
	} {
		t.Run(name, func(t *testing.T) {
			b, err := brokers.Open(t.Context(), url, nil)
			require.NoError(t, err)
			defer b.Close()
			pub := b.Publisher()
			assert.ErrorIs(t, pub.Publish("", message.NewMessage("1", []byte("{}"))), brokers.ErrInvalidTopic)
			assert.ErrorIs(t, pub.Publish(strings.Repeat("t", 201), message.NewMessage("1", []byte("{}"))), brokers.ErrInvalidTopic)
			err = pub.Publish("t", message.NewMessage("big", make([]byte, 101)))
			require.ErrorIs(t, err, brokers.ErrMessageTooLarge)
			assert.Contains(t, err.Error(), "message big has a payload of 101 bytes, over the broker's limit of 100 (max_message_bytes)")
			meta := message.NewMessage("meta", []byte("{}"))
			meta.Metadata.Set("k", strings.Repeat("v", brokers.MaxMetadataBytes))
			assert.ErrorContains(t, pub.Publish("t", meta), "over the limit of 1048576", "metadata has its own limit")
			fits := message.NewMessage("fits", make([]byte, 100))
			fits.Metadata.Set("reason", strings.Repeat("r", 1000)) // a dead letter of a message at the limit
			require.NoError(t, pub.Publish("t", fits))
			sub, err := b.Subscriber("g")
			require.NoError(t, err)
			_, err = sub.Subscribe(t.Context(), "bad topic")
			assert.ErrorIs(t, err, brokers.ErrInvalidTopic)
		})
	}
	_, err := brokers.Open(t.Context(), "mem://?max_message_bytes=lots", nil)
	assert.ErrorContains(t, err, "max_message_bytes must be a number of bytes")
}

// A stored message over the limit (written by an older version, or with a
// larger limit) is delivered without its payload and with the reason, by
// subscriptions and streams alike; the messages after it flow on.
func TestSQLiteDeliversAStoredOversizedMessageAsRejected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	big, err := brokers.Open(t.Context(), "sqlite://"+path, nil)
	require.NoError(t, err)
	for _, m := range []*message.Message{
		message.NewMessage("small-1", []byte(`{}`)),
		message.NewMessage("large", make([]byte, 5000)),
		message.NewMessage("small-2", []byte(`{}`)),
	} {
		require.NoError(t, big.Publisher().Publish("t", m))
	}
	require.NoError(t, big.Close())

	b, err := brokers.Open(t.Context(), "sqlite://"+path+"?poll=10ms&max_message_bytes=1000", nil)
	require.NoError(t, err)
	defer b.Close()
	sub, err := b.Subscriber("g")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "t")
	require.NoError(t, err)
	var got []string
	for len(got) < 3 {
		select {
		case m := <-ch:
			got = append(got, m.UUID+":"+m.Metadata.Get(brokers.MetaRejected))
			if m.UUID == "large" {
				assert.Empty(t, m.Payload)
				assert.ErrorIs(t, brokers.Rejected(m), brokers.ErrMessageTooLarge)
			} else {
				assert.NoError(t, brokers.Rejected(m))
			}
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("got only %v", got)
		}
	}
	assert.Equal(t, "small-1:", got[0])
	assert.Equal(t, "large:message large has a payload of 5000 bytes, over the broker's limit of 1000 (max_message_bytes); not loaded", got[1])
	assert.Equal(t, "small-2:", got[2])

	var streamed []string
	sctx, scancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer scancel()
	require.NoError(t, b.(brokers.Streamer).Stream(sctx, "t", "s", func(s brokers.Stream) error {
		for m := range s.Messages() {
			streamed = append(streamed, m.UUID+":"+m.Metadata.Get(brokers.MetaRejected))
			if len(streamed) == 3 {
				scancel()
			}
		}
		return nil
	}))
	require.Len(t, streamed, 3)
	assert.Contains(t, streamed[1], "over the broker's limit of 1000")
	assert.Equal(t, "small-2:", streamed[2])
}
