package brokers_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

// pubSub opens a broker for Watermill's suite; the broker is closed by the
// suite through the subscriber (and at test end).
func pubSub(t *testing.T, url, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	b, err := brokers.Open(context.Background(), url, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	sub, err := b.Subscriber(group)
	require.NoError(t, err)
	return b.Publisher(), sub
}

func TestSQLitePubSub(t *testing.T) {
	dir := t.TempDir()
	url := "sqlite://" + filepath.Join(dir, "queue.db") + "?poll=20ms&resend=20ms"
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:                      true,
			ExactlyOnceDelivery:                 false,
			GuaranteedOrder:                     true,
			GuaranteedOrderWithSingleSubscriber: true,
			Persistent:                          true,
			NewSubscriberReceivesOldMessages:    true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return pubSub(t, url, "") },
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) { return pubSub(t, url, group) },
	)
}

func TestMemPubSub(t *testing.T) {
	// One GoChannel is shared by publisher and subscriber, as in-process
	// only: the suite needs a single instance.
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:        false,
			ExactlyOnceDelivery:   true,
			GuaranteedOrder:       false,
			Persistent:            false,
			RequireSingleInstance: true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return pubSub(t, "mem://?persistent=true&buffer=10000", "")
		},
		nil,
	)
}

func TestURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"nope://x":                     "unknown broker scheme",
		"sqlite://":                    "needs a file path",
		"sqlite://q.db?poll=soon":      "poll must be a non-negative duration",
		"sqlite://q.db?batch=0":        "batch must be a positive integer",
		"sqlite://q.db?sync=sometimes": "synchronous must be normal or full",
		"mem://?buffer=-1":             "buffer must be a non-negative integer",
		"mem://?persistent=perhaps":    "persistent must be true or false",
	} {
		_, err := brokers.Open(context.Background(), url, nil)
		require.ErrorContains(t, err, want, url)
	}
}
