package brokers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/brokers/inspecttest"
)

func TestSQLiteInspector(t *testing.T) {
	// batch=1: the group's offset is stored after each ack, not after a batch.
	inspecttest.Run(t, "sqlite://"+filepath.Join(t.TempDir(), "queue.db")+"?poll=20ms&batch=1")
}

func TestSQLiteTopicsSumsPartitionsAndSkipsPrivateGroups(t *testing.T) {
	ctx := t.Context()
	b, err := brokers.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "queue.db")+"?poll=20ms", nil)
	require.NoError(t, err)
	defer b.Close()
	for i := 0; i < 10; i++ {
		require.NoError(t, b.Publisher().Publish("jobs", message.NewMessage(fmt.Sprint(i), nil)))
	}
	_, err = b.(brokers.Partitioner).Partitions(ctx, "jobs", "workers", 3)
	require.NoError(t, err)
	topics, err := b.(brokers.Inspector).Topics(ctx)
	require.NoError(t, err)
	require.Len(t, topics, 1)
	assert.Equal(t, brokers.TopicInfo{Name: "jobs", Messages: 10}, topics[0], "partitions not started have no offsets yet")
	err = b.(brokers.Inspector).Tail(ctx, `bad"name`, true, nil)
	assert.ErrorContains(t, err, "names hold only letters")
}

func TestMemInspectorIsInProcess(t *testing.T) {
	ctx := t.Context()
	b, err := brokers.Open(ctx, "mem://", nil)
	require.NoError(t, err)
	defer b.Close()
	in := b.(brokers.Inspector)
	_, err = in.Topics(ctx)
	require.ErrorIs(t, err, brokers.ErrInProcessOnly)
	got := make(chan string, 1)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = in.Tail(tctx, "t", false, func(r brokers.Record) error { got <- r.Message.UUID; return nil })
	}()
	require.Eventually(t, func() bool {
		require.NoError(t, b.Publisher().Publish("t", message.NewMessage("x", nil)))
		select {
		case id := <-got:
			return id == "x"
		default:
			return false
		}
	}, 10*time.Second, 50*time.Millisecond)
}
