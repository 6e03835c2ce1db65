package brokers_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/brokers/streamtest"
)

func opener(url string) streamtest.Opener {
	return func(t *testing.T) brokers.Broker {
		b, err := brokers.Open(context.Background(), url, watermill.NopLogger{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
}

func TestSQLiteStream(t *testing.T) {
	streamtest.Run(t, opener("sqlite://"+filepath.Join(t.TempDir(), "queue.db")+"?poll=10ms"))
}

func TestKafkaStream(t *testing.T) {
	streamtest.Run(t, opener(kafkaURL(t, "partitions=3")))
}
