package brokers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/brokers"
)

// kafkaURL starts an in-process Kafka-protocol cluster (kfake) for the test
// and returns a broker URL for it.
func kafkaURL(t *testing.T, params string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return "kafka://" + strings.Join(c.ListenAddrs(), ",") + "?max_wait=20ms&" + params
}

func TestKafkaPubSub(t *testing.T) {
	url := kafkaURL(t, "partitions=8")
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:      true,
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     false,
			Persistent:          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, url, "test") },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, url, group) },
	)
}

// TestKafkaPubSubOrdered runs the suite on one partition, where Kafka keeps
// publish order.
func TestKafkaPubSubOrdered(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	url := kafkaURL(t, "partitions=1")
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:      true,
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     true,
			Persistent:          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, url, "test") },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, url, group) },
	)
}

func TestKafkaURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"kafka://":                           "needs brokers",
		"kafka://h:1?partitions=0":           "partitions must be a positive integer",
		"kafka://h:1?version=banana":         "version",
		"kafka://h:1?sasl=KERBEROS":          "sasl must be",
		"kafka://h:1?sasl=PLAIN":             "needs a user",
		"kafka://u:p@h:1?sasl=SCRAM-SHA-256": "not supported yet",
	} {
		_, err := brokers.Open(context.Background(), url, nil)
		require.ErrorContains(t, err, want, url)
	}
}

func TestKafkaSASLPlain(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "sluice", "s3cret"))
	require.NoError(t, err)
	defer c.Close()
	addr := strings.Join(c.ListenAddrs(), ",")

	b, err := brokers.Open(context.Background(), "kafka://sluice:s3cret@"+addr+"?sasl=PLAIN&max_wait=20ms", nil)
	require.NoError(t, err)
	defer b.Close()
	sub, err := b.Subscriber("g")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "secured")
	require.NoError(t, err)
	require.NoError(t, b.Publisher().Publish("secured", message.NewMessage("m-1", []byte("hello"))))
	select {
	case m := <-ch:
		m.Ack()
		require.Equal(t, "hello", string(m.Payload))
	case <-ctx.Done():
		t.Fatal("no message over SASL")
	}

	t.Setenv("SLUICE_KAFKA_PASSWORD", "wrong")
	t.Setenv("SLUICE_KAFKA_USER", "sluice")
	_, err = brokers.Open(context.Background(), "kafka://"+addr+"?sasl=PLAIN", nil)
	require.Error(t, err, "wrong credentials fail at open")
	require.ErrorContains(t, err, "connect to")
}
