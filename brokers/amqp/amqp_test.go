package amqp_test

import (
	"context"
	"os"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	_ "github.com/sluicehq/sluice/brokers/amqp"
	"github.com/sluicehq/sluice/brokers/streamtest"
)

// amqpURL is the RabbitMQ scripts/services/rabbitmq.sh started
// (SLUICE_TEST_AMQP). Without one the test is skipped, except under
// CI=true, where that is a failure.
func amqpURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("SLUICE_TEST_AMQP")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("SLUICE_TEST_AMQP is not set: run scripts/test.sh, which starts RabbitMQ (scripts/services/rabbitmq.sh)")
		}
		t.Skip("no RabbitMQ: eval \"$(scripts/services/rabbitmq.sh start)\" sets SLUICE_TEST_AMQP")
	}
	return u
}

func open(t *testing.T, url string) brokers.Broker {
	t.Helper()
	b, err := brokers.Open(context.Background(), url, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func pubSub(t *testing.T, url, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	b := open(t, url)
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	return b.Publisher(), sub
}

// TestPubSub runs Watermill's universal suite against a real RabbitMQ.
func TestPubSub(t *testing.T) {
	url := amqpURL(t)
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:                      true,
			ExactlyOnceDelivery:                 false,
			GuaranteedOrder:                     true,
			GuaranteedOrderWithSingleSubscriber: true,
			Persistent:                          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, url, "test") },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, url, group) },
	)
}

func TestURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"amqp://":                          "needs a host",
		"amqp://h:5672/?prefetch=0":        "prefetch must be an integer from 1 to 65535",
		"amqp://h:5672/?stream_prefetch=x": "stream_prefetch must be",
		"amqp://u:secret@127.0.0.1:1/?x=1": "connect to amqp://u:xxxxx@127.0.0.1:1/",
	} {
		_, err := brokers.Open(context.Background(), url, nil)
		require.ErrorContains(t, err, want, url)
		require.NotContains(t, err.Error(), "secret", "no password in errors")
	}
}

// TestStream runs the Streamer conformance suite against RabbitMQ.
func TestStream(t *testing.T) {
	url := amqpURL(t)
	streamtest.Run(t, func(t *testing.T) brokers.Broker { return open(t, url) })
}
