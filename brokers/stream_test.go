package brokers_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
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

// A row whose stored metadata is damaged is delivered with the reason, and
// the stream goes on past it.
func TestSQLiteStreamDeliversADamagedRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	b := opener("sqlite://" + path + "?poll=10ms")(t)
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, b.Publisher().Publish("t", message.NewMessage(id, []byte(`{}`))))
	}
	db, err := sql.Open("sqlite3", path)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`UPDATE "sluice_q_t" SET metadata = '{broken' WHERE uuid = 'b'`)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []string
	err = b.(brokers.Streamer).Stream(ctx, "t", "g", func(s brokers.Stream) error {
		for m := range s.Messages() {
			got = append(got, m.UUID+":"+m.Metadata.Get(brokers.MetaUnreadable))
			if len(got) == 3 {
				cancel()
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, "a:", got[0])
	assert.Contains(t, got[1], "b:metadata is not JSON")
	assert.Equal(t, "c:", got[2])
}

// A position belongs to a delivery: it is kept in the message's context,
// so a copy published again (a dead letter, a replay) does not carry it.
func TestPositionIsTheDeliverys(t *testing.T) {
	m := message.NewMessage("a", nil)
	_, _, ok := brokers.Position(m)
	assert.False(t, ok)
	_, ok = brokers.Timestamp(m)
	assert.False(t, ok)

	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	brokers.SetPosition(m, 3, 42, at)
	p, off, ok := brokers.Position(m)
	assert.Equal(t, []any{int32(3), int64(42), true}, []any{p, off, ok})
	ts, ok := brokers.Timestamp(m)
	assert.True(t, ok)
	assert.Equal(t, at, ts)
	assert.Empty(t, m.Metadata, "nothing written into the metadata")

	_, _, ok = brokers.Position(m.Copy())
	assert.False(t, ok, "a copy to publish has no position")

	brokers.SetPosition(m, 0, 7, time.Time{})
	_, ok = brokers.Timestamp(m)
	assert.False(t, ok, "an unknown store time")
}

// On mem://, a subscription through Subscriber sees what it always saw
// (with persistent=true every message since the broker opened; without,
// what follows it), while a topic nobody subscribed to that way is read
// by streams alone. (The GoChannel hands each message to a subscription
// on a goroutine of its own: their order is not kept.)
func TestMemSubscriptionsAfterStreams(t *testing.T) {
	publish := func(b brokers.Broker, ids ...string) {
		for _, id := range ids {
			require.NoError(t, b.Publisher().Publish("t", message.NewMessage(id, nil)))
		}
	}
	receive := func(ch <-chan *message.Message, n int) []string {
		var ids []string
		for len(ids) < n {
			select {
			case m := <-ch:
				m.Ack()
				ids = append(ids, m.UUID)
			case <-time.After(10 * time.Second):
				t.Fatalf("received %v, want %d messages", ids, n)
			}
		}
		return ids
	}
	for _, persistent := range []bool{true, false} {
		t.Run(fmt.Sprint("persistent=", persistent), func(t *testing.T) {
			b := opener(fmt.Sprintf("mem://?persistent=%t", persistent))(t)
			streamed := make(chan *message.Message, 10)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go func() {
				_ = b.(brokers.Streamer).Stream(ctx, "t", "g", func(s brokers.Stream) error {
					for m := range s.Messages() {
						streamed <- m
					}
					return nil
				})
			}()
			publish(b, "m1", "m2")
			if !persistent { // the stream may have started after them
				require.Eventually(t, func() bool { publish(b, "probe"); return len(streamed) > 0 }, 10*time.Second, 10*time.Millisecond)
			} else {
				assert.Equal(t, []string{"m1", "m2"}, receive(streamed, 2))
			}

			sub, err := b.Subscriber("g")
			require.NoError(t, err)
			ch, err := sub.Subscribe(ctx, "t")
			require.NoError(t, err)
			publish(b, "m3", "m4")
			want := []string{"m3", "m4"}
			if persistent {
				want = []string{"m1", "m2", "m3", "m4"}
			}
			assert.ElementsMatch(t, want, receive(ch, len(want)))
			select {
			case m := <-ch:
				t.Fatalf("unexpected %s", m.UUID)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

// A closed mem:// broker refuses what is published, streamed topics too.
func TestMemPublishAfterClose(t *testing.T) {
	for _, url := range []string{"mem://", "mem://?persistent=true"} {
		t.Run(url, func(t *testing.T) {
			b, err := brokers.Open(t.Context(), url, watermill.NopLogger{})
			require.NoError(t, err)
			require.NoError(t, b.Publisher().Publish("t", message.NewMessage("before", nil)))
			require.NoError(t, b.Close())
			assert.Error(t, b.Publisher().Publish("t", message.NewMessage("after", nil)))
		})
	}
}
