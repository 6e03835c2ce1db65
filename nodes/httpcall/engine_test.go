package httpcall_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/all"
	"github.com/sluicehq/sluice/nodes/httpcall"
	"github.com/sluicehq/sluice/storage"
)

// TestEngineRetriesAndDeadLetters runs http.call in a flow on the real
// engine: a 503 is retried (with the same Idempotency-Key) until the
// service recovers; a 400 is dead-lettered after one attempt.
func TestEngineRetriesAndDeadLetters(t *testing.T) {
	var fails atomic.Int32
	fails.Store(2)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, "no such customer")
			return
		}
		if fails.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok": true}`)
	})
	dir := t.TempDir()
	flowFile := filepath.Join(dir, "hooks.yaml")
	require.NoError(t, os.WriteFile(flowFile, []byte(`
name: hooks
on: {topic: orders}
retry: {max_attempts: 5, backoff: 10ms, max_backoff: 20ms}
steps:
  - id: call
    node: http.call
    timeout: 5s
    with: {url: "`+srv.URL+`/{{ payload.path }}"}
  - node: publish
    with: {topic: done}
`), 0o644))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	broker, err := brokers.Open(ctx, "mem://", nil)
	require.NoError(t, err)
	defer broker.Close()
	store := storage.NewStore(storage.NewMem())
	logger := slog.New(slog.DiscardHandler)
	fl, err := flows.Loader{Deps: nodes.Deps{Store: store, Logger: logger}}.Load(flowFile)
	require.NoError(t, err)
	engine, err := flows.NewEngine(flows.Options{Broker: broker, Store: store, Logger: logger}, fl)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- engine.Run(ctx) }()
	select {
	case <-engine.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	sub, err := broker.Subscriber("test")
	require.NoError(t, err)
	outs, err := sub.Subscribe(ctx, "done")
	require.NoError(t, err)
	dlq, err := sub.Subscribe(ctx, "hooks.dlq")
	require.NoError(t, err)

	require.NoError(t, broker.Publisher().Publish("orders", message.NewMessage("m-503", []byte(`{"path": "flaky"}`))))
	select {
	case m := <-outs:
		m.Ack()
		assert.JSONEq(t, `{"ok": true}`, string(m.Payload))
	case <-time.After(30 * time.Second):
		t.Fatal("the 503s were not retried to success")
	}
	reqs := srv.requests()
	require.Len(t, reqs, 3, "two 503s, then 200")
	want := httpcall.IdempotencyKey("m-503", "hooks", "call")
	for _, r := range reqs {
		assert.Equal(t, want, r.Header.Get("Idempotency-Key"))
	}

	require.NoError(t, broker.Publisher().Publish("orders", message.NewMessage("m-400", []byte(`{"path": "bad"}`))))
	select {
	case m := <-dlq:
		m.Ack()
		assert.Contains(t, m.Metadata.Get("sluice_error"), "400 Bad Request: no such customer")
	case <-time.After(30 * time.Second):
		t.Fatal("the 400 was not dead-lettered")
	}
	assert.Len(t, srv.requests(), 4, "a 400 is not retried")
	cancel()
	<-done
}
