package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

// Kafka: publishing over the limit fails before the producer; a record over
// the consumer's limit (another producer's, or a larger limit's) is
// delivered as rejected, by subscriptions and streams.
func TestKafkaMessageLimits(t *testing.T) {
	url := kafkaURL(t, "partitions=1")
	big, err := brokers.Open(t.Context(), url, nil)
	require.NoError(t, err)
	defer big.Close()
	require.NoError(t, big.Publisher().Publish("k", message.NewMessage("large", make([]byte, 5000))))
	require.NoError(t, big.Publisher().Publish("k", message.NewMessage("small", []byte(`{}`))))

	b, err := brokers.Open(t.Context(), url+"&max_message_bytes=1000", nil)
	require.NoError(t, err)
	defer b.Close()
	err = b.Publisher().Publish("k", message.NewMessage("big", make([]byte, 1001)))
	require.ErrorIs(t, err, brokers.ErrMessageTooLarge)
	assert.ErrorIs(t, b.Publisher().Publish("bad topic", message.NewMessage("x", nil)), brokers.ErrInvalidTopic)

	sub, err := b.Subscriber("g")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "k")
	require.NoError(t, err)
	var got []string
	for len(got) < 2 {
		select {
		case m := <-ch:
			got = append(got, m.UUID)
			if m.UUID == "large" {
				assert.Empty(t, m.Payload)
				assert.ErrorContains(t, brokers.Rejected(m), "over the broker's limit of 1000")
			}
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("got only %v", got)
		}
	}
	assert.Equal(t, []string{"large", "small"}, got)

	var streamed []error
	sctx, scancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer scancel()
	require.NoError(t, b.(brokers.Streamer).Stream(sctx, "k", "s", func(s brokers.Stream) error {
		for m := range s.Messages() {
			streamed = append(streamed, brokers.Rejected(m))
			if len(streamed) == 2 {
				scancel()
			}
		}
		return nil
	}))
	require.Len(t, streamed, 2)
	assert.ErrorIs(t, streamed[0], brokers.ErrMessageTooLarge)
	assert.NoError(t, streamed[1])
}
