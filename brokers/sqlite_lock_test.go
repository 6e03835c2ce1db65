package brokers_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
)

// TestSQLiteQueueHasOneConsumingProcess: while another process holds the
// queue's consumer lock (taken here with flock on its own open file, as a
// second process would), subscribing fails with a clear error; publishing
// still works; once the lock is released, subscribing works.
func TestSQLiteQueueHasOneConsumingProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	other, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer other.Close()
	require.NoError(t, syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))

	b, err := brokers.Open(t.Context(), "sqlite://"+path, watermill.NopLogger{})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Publisher().Publish("orders", message.NewMessage("m1", []byte("{}"))), "publishing needs no lock")
	_, err = b.Subscriber("flow")
	require.Error(t, err)
	assert.ErrorContains(t, err, "another sluice process is consuming this queue")
	assert.ErrorContains(t, err, path)
	err = b.(brokers.Streamer).Stream(t.Context(), "orders", "flow", func(brokers.Stream) error { return nil })
	assert.ErrorContains(t, err, "another sluice process is consuming this queue")

	require.NoError(t, syscall.Flock(int(other.Fd()), syscall.LOCK_UN))
	sub, err := b.Subscriber("flow")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "orders")
	require.NoError(t, err)
	m := <-msgs
	assert.Equal(t, "m1", m.UUID)
	m.Ack()

	// Now this process holds it: a second holder is refused, and a second
	// broker of this process shares it.
	assert.ErrorIs(t, syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), syscall.EWOULDBLOCK)
	b2, err := brokers.Open(t.Context(), "sqlite://"+path, watermill.NopLogger{})
	require.NoError(t, err)
	_, err = b2.Subscriber("flow2")
	require.NoError(t, err)
	require.NoError(t, b2.Close())
	require.NoError(t, b.Close())
	require.NoError(t, syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), "closed brokers release the lock")
}
