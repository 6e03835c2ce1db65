package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/state"
)

func TestDLQCommands(t *testing.T) {
	home := t.TempDir()
	st, err := state.Open(filepath.Join(home, "state.db"))
	require.NoError(t, err)
	now := time.Now().UTC()
	for _, dl := range []state.DeadLetter{
		{ID: "dl-1", Flow: "orders", Step: "sum", Node: "transform", Error: "invalid operation: * (mismatched types)", Attempts: 1, Failed: now,
			SourceTopic: "orders", SourceID: "m-1", Topic: "orders.dlq", Payload: []byte(`{"qty":"x"}`), Metadata: map[string]string{"tenant": "acme", "sluice_error": "old"}},
		{ID: "dl-2", Flow: "orders", Step: "save", Node: "storage.put", Error: "bucket not found", Attempts: 3, Failed: now,
			SourceTopic: "orders", SourceID: "m-2", Topic: "orders.dlq", Payload: []byte(`not json`)},
		{ID: "dl-3", Flow: "thumbs", Step: "thumb", Node: "image.thumbnail", Error: "not a supported image", Attempts: 1, Failed: now,
			SourceTopic: "sluice.bucket.uploads", SourceID: "m-3", Topic: "thumbs.dlq", Payload: []byte(`{"key":"a.jpg"}`)},
	} {
		require.NoError(t, st.RecordDeadLetter(context.Background(), dl))
	}
	require.NoError(t, st.Close())

	out, err := sluice(t, home, "", "dlq", "list", "--flow", "orders")
	require.NoError(t, err)
	assert.Contains(t, out, "dl-1")
	assert.Contains(t, out, "dl-2")
	assert.NotContains(t, out, "dl-3")

	out, err = sluice(t, home, "", "dlq", "show", "dl-2")
	require.NoError(t, err)
	var shown map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &shown))
	assert.Equal(t, "not json", shown["payload"], "a payload that is not JSON is shown as text")
	assert.Equal(t, "bucket not found", shown["error"])
	_, err = sluice(t, home, "", "dlq", "show", "nope")
	assert.ErrorContains(t, err, `no dead letter "nope"`)

	_, err = sluice(t, home, "", "dlq", "replay")
	assert.ErrorContains(t, err, "--all")
	out, err = sluice(t, home, "", "dlq", "replay", "--error", "invalid operation")
	require.NoError(t, err)
	assert.Equal(t, "replayed 1 dead letter(s)\n", out)

	b, err := brokers.Open(context.Background(), "sqlite://"+filepath.Join(home, "queue.db")+"?poll=5ms", nil)
	require.NoError(t, err)
	defer b.Close()
	sub, err := b.Subscriber("check")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "orders")
	require.NoError(t, err)
	select {
	case m := <-ch:
		m.Ack()
		assert.Equal(t, `{"qty":"x"}`, string(m.Payload))
		assert.Equal(t, "dl-1", m.Metadata.Get("sluice_replay_of"))
		assert.Equal(t, "acme", m.Metadata.Get("tenant"))
		assert.Empty(t, m.Metadata.Get("sluice_error"), "failure metadata is not carried into the replay")
	case <-ctx.Done():
		t.Fatal("replayed message not on its source topic")
	}

	out, err = sluice(t, home, "", "dlq", "list")
	require.NoError(t, err)
	assert.NotContains(t, out, "dl-1", "replayed dead letters are not pending")
	out, err = sluice(t, home, "", "dlq", "list", "--replayed", "--json")
	require.NoError(t, err)
	assert.Equal(t, 3, strings.Count(out, "\n"))

	out, err = sluice(t, home, "", "dlq", "purge", "--flow", "thumbs")
	require.NoError(t, err)
	assert.Equal(t, "purged 1 dead letter(s)\n", out)
	out, err = sluice(t, home, "", "dlq", "purge", "--all")
	require.NoError(t, err)
	assert.Equal(t, "purged 2 dead letter(s)\n", out)
}

func TestRunsShow(t *testing.T) {
	home := t.TempDir()
	st, err := state.Open(filepath.Join(home, "state.db"))
	require.NoError(t, err)
	st.Record(state.Run{ID: "r-1", Flow: "thumbs", Trigger: "bucket:uploads", Input: "uploads/a.jpg@e1", Attempts: 2,
		Status: state.StatusDeadLettered, Started: time.Now().UTC(), Duration: 40 * time.Millisecond, Step: "save", Error: "bucket not found",
		Steps: []state.StepRun{
			{ID: "thumb", Node: "image.thumbnail", Status: "succeeded", Attempts: 1, Duration: 30 * time.Millisecond},
			{ID: "save", Node: "storage.put", Status: "failed", Attempts: 2, Duration: 10 * time.Millisecond, Error: "bucket not found"},
		}})
	require.NoError(t, st.Close())
	out, err := sluice(t, home, "", "runs", "show", "r-1")
	require.NoError(t, err)
	assert.Contains(t, out, "failed at save after 2 attempt(s): bucket not found")
	assert.Regexp(t, `thumb\s+image.thumbnail\s+succeeded\s+1\s+30ms`, out)
	assert.Regexp(t, `save\s+storage.put\s+failed\s+2\s+10ms\s+bucket not found`, out)
	_, err = sluice(t, home, "", "runs", "show", "r-404")
	assert.ErrorContains(t, err, `no run "r-404"`)
}
