//go:build linux

package brokers

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSQLiteGroupHasOneConsumingProcess: while another process holds the
// lock of a consumer group (taken here on its own open file description,
// as a second process would), subscribing that group fails with a clear
// error; publishing and other groups still work; once the lock is
// released, subscribing works, and then this process holds it.
func TestSQLiteGroupHasOneConsumingProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	other, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	defer other.Close()
	busy, err := lockRange(other, groupOffset("flow"))
	require.NoError(t, err)
	require.False(t, busy)

	b, err := Open(t.Context(), "sqlite://"+path, watermill.NopLogger{})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Publisher().Publish("orders", message.NewMessage("m1", []byte("{}"))), "publishing needs no lock")
	_, err = b.Subscriber("flow")
	require.Error(t, err)
	assert.ErrorContains(t, err, `consumer group "flow": another sluice process is consuming this queue`)
	assert.ErrorContains(t, err, path)
	err = b.(Streamer).Stream(t.Context(), "orders", "flow", func(Stream) error { return nil })
	assert.ErrorIs(t, err, errQueueLocked)
	_, err = b.Subscriber("reader")
	require.NoError(t, err, "another group is free")

	lk := unix.Flock_t{Type: unix.F_UNLCK, Start: groupOffset("flow"), Len: 1}
	require.NoError(t, unix.FcntlFlock(other.Fd(), unix.F_OFD_SETLK, &lk))
	sub, err := b.Subscriber("flow")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "orders")
	require.NoError(t, err)
	m := <-msgs
	assert.Equal(t, "m1", m.UUID)
	m.Ack()

	// This process holds it now: another holder is refused, a second
	// broker of this process shares it, and closing both releases it.
	busy, err = lockRange(other, groupOffset("flow"))
	require.NoError(t, err)
	assert.True(t, busy)
	b2, err := Open(t.Context(), "sqlite://"+path, watermill.NopLogger{})
	require.NoError(t, err)
	_, err = b2.Subscriber("flow")
	require.NoError(t, err)
	require.NoError(t, b2.Close())
	busy, err = lockRange(other, groupOffset("flow"))
	require.NoError(t, err)
	assert.True(t, busy, "still held by the first broker")
	require.NoError(t, b.Close())
	busy, err = lockRange(other, groupOffset("flow"))
	require.NoError(t, err)
	assert.False(t, busy, "closed brokers release the lock")
}
