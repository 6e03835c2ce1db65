package brokers_test

import (
	"context"
	"database/sql"
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
