package flows_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

// harness is an engine on real parts: a SQLite queue file, a folder
// bucket store, and a state database.
type harness struct {
	t      testing.TB
	broker brokers.Broker
	store  *storage.Store
	state  *state.DB
	dir    string
	engine *flows.Engine
	reg    *prometheus.Registry
	done   chan error
	cancel context.CancelFunc
}

// quietLogger discards logs; SLUICE_TEST_LOG=1 shows them.
func quietLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func start(t *testing.T, flowYAML string, reg *nodes.Registry) *harness {
	t.Helper()
	return startIn(t, t.TempDir(), flowYAML, reg)
}

// startIn starts an engine on the queue, buckets and state under dir, so a
// test can stop it and start another on the same files.
func startIn(t *testing.T, dir, flowYAML string, reg *nodes.Registry) *harness {
	t.Helper()
	return startWith(t, dir, "sqlite://"+filepath.Join(dir, "queue.db")+"?poll=10ms", flowYAML, reg)
}

// startWith starts an engine on the given broker, with buckets and state
// under dir.
func startWith(t *testing.T, dir, brokerURL, flowYAML string, reg *nodes.Registry) *harness {
	t.Helper()
	return startOn(t, dir, brokerURL, "fs://"+filepath.Join(dir, "buckets")+"?settle=30ms", flowYAML, reg)
}

// startOn starts an engine on the given broker and storage, with state
// under dir.
//
// stateBusyTimeout is how long the state database waits for a lock; tests
// of a locked database shorten it (tests here do not run in parallel).
var stateBusyTimeout = 30 * time.Second

func startOn(t testing.TB, dir, brokerURL, storageURL, flowYAML string, reg *nodes.Registry) *harness {
	t.Helper()
	b, err := brokers.Open(t.Context(), brokerURL, nil)
	require.NoError(t, err)
	return startOnBroker(t, dir, b, storageURL, flowYAML, reg)
}

// startOnBroker starts an engine on an opened broker, which it closes.
func startOnBroker(t testing.TB, dir string, b brokers.Broker, storageURL, flowYAML string, reg *nodes.Registry) *harness {
	t.Helper()
	return startWithOptions(t, dir, b, storageURL, flowYAML, reg, nil)
}

// startWithOptions is startOnBroker with options set by set, if not nil.
func startWithOptions(t testing.TB, dir string, b brokers.Broker, storageURL, flowYAML string, reg *nodes.Registry, set func(*flows.Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, broker: b}
	var err error
	h.store, err = storage.Open(t.Context(), storageURL)
	require.NoError(t, err)
	h.state, err = state.OpenTimeout(filepath.Join(dir, "state.db"), stateBusyTimeout)
	require.NoError(t, err)

	file := filepath.Join(dir, "flow.yaml")
	require.NoError(t, os.WriteFile(file, []byte(flowYAML), 0o644))
	fl, err := flows.Loader{Registry: reg, Deps: nodes.Deps{Store: h.store, Logger: quietLogger()}}.Load(file)
	require.NoError(t, err)
	h.reg = prometheus.NewRegistry()
	opts := flows.Options{Broker: h.broker, Store: h.store, State: h.state, Logger: quietLogger(),
		Metrics: flows.NewMetrics(h.reg), DrainTimeout: 5 * time.Second}
	if set != nil {
		set(&opts)
	}
	h.engine, err = flows.NewEngine(opts, fl)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.engine.Run(ctx) }()
	select {
	case <-h.engine.Ready():
	case err := <-h.done:
		t.Fatalf("engine stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("engine not ready in 10s")
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		assert.NoError(h.t, err)
	case <-time.After(20 * time.Second):
		h.t.Error("engine did not stop in 20s")
	}
	_ = h.state.Close()
	_ = h.broker.Close()
}

// counter returns the value of a counter with the given labels.
func (h *harness) counter(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(h.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// waitRuns returns the recorded runs matching f once there are n of them:
// a run is recorded just after its outputs are published, so a test that
// saw the outputs may look before the record is there.
func (h *harness) waitRuns(f state.Filter, n int) []state.Run {
	h.t.Helper()
	var runs []state.Run
	require.Eventually(h.t, func() bool {
		require.NoError(h.t, h.state.Flush(h.t.Context()))
		var err error
		runs, err = h.state.Runs(h.t.Context(), f)
		require.NoError(h.t, err)
		return len(runs) >= n
	}, 20*time.Second, 10*time.Millisecond, "want %d runs matching %+v", n, f)
	return runs
}

func (h *harness) publish(topic, payload string) string {
	h.t.Helper()
	m := message.NewMessage(strings.ReplaceAll(h.t.Name(), "/", "-")+"-"+time.Now().Format("150405.000000000"), []byte(payload))
	require.NoError(h.t, h.broker.Publisher().Publish(topic, m))
	return m.UUID
}

// consume collects n messages of topic (as a separate consumer group).
func (h *harness) consume(topic string, n int) []*message.Message {
	h.t.Helper()
	return h.consumeAs("test-reader-"+topic, topic, n)
}

// consumeAs collects n messages of topic as the given consumer group.
func (h *harness) consumeAs(group, topic string, n int) []*message.Message {
	h.t.Helper()
	sub, err := h.broker.Subscriber(group)
	require.NoError(h.t, err)
	defer sub.Close()
	ctx, cancel := context.WithTimeout(h.t.Context(), 15*time.Second)
	defer cancel()
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(h.t, err)
	var out []*message.Message
	for len(out) < n {
		select {
		case m := <-ch:
			m.Ack()
			out = append(out, m)
		case <-ctx.Done():
			h.t.Fatalf("got %d of %d messages on %s", len(out), n, topic)
		}
	}
	return out
}

func payloadOf(t *testing.T, m *message.Message) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(m.Payload, &v), "payload %s", m.Payload)
	return v
}

const ordersFlow = `
name: orders
on: {topic: orders}
retry: {max_attempts: 2, backoff: 10ms}
steps:
  - id: shape
    node: transform
    with:
      set:
        total: payload.qty * payload.price
  - id: route
    node: switch
    with:
      cases:
        - when: payload.qty * payload.price > 1000
          branch: review
        - when: payload.status == "cancelled"
          topic: cancellations
  - node: publish
    with:
      topics: [billing, warehouse]
branches:
  review:
    - node: publish
      with:
        topic: review
        payload: '{"id": payload.id, "total": payload.total, "why": "large"}'
`

func TestEngineRoutesAndFansOut(t *testing.T) {
	h := start(t, ordersFlow, nil)
	h.publish("orders", `{"id":"o-1","qty":2,"price":10}`)
	h.publish("orders", `{"id":"o-2","qty":100,"price":20}`)
	h.publish("orders", `{"id":"o-3","qty":1,"price":1,"status":"cancelled"}`)

	billing := h.consume("billing", 1)
	assert.Equal(t, "o-1", payloadOf(t, billing[0])["id"])
	assert.EqualValues(t, 20, payloadOf(t, billing[0])["total"])
	assert.Equal(t, "orders", billing[0].Metadata.Get(flows.MetaFlow))
	warehouse := h.consume("warehouse", 1)
	assert.Equal(t, "o-1", payloadOf(t, warehouse[0])["id"])

	review := h.consume("review", 1)
	assert.Equal(t, map[string]any{"id": "o-2", "total": 2000.0, "why": "large"}, payloadOf(t, review[0]))

	cancelled := h.consume("cancellations", 1)
	assert.Equal(t, "o-3", payloadOf(t, cancelled[0])["id"])

	require.Eventually(t, func() bool {
		require.NoError(t, h.state.Flush(t.Context()))
		runs, err := h.state.Runs(t.Context(), state.Filter{Flow: "orders"})
		require.NoError(t, err)
		return len(runs) == 3
	}, 10*time.Second, 20*time.Millisecond)
	runs, _ := h.state.Runs(t.Context(), state.Filter{Flow: "orders", Status: state.StatusSucceeded})
	assert.Len(t, runs, 3)
}

func TestEngineDeadLettersBadInputAndKeepsGoing(t *testing.T) {
	h := start(t, `
name: strict
on: {topic: in}
retry: {max_attempts: 3, backoff: 5ms}
steps:
  - id: total
    node: transform
    with:
      set: {total: payload.qty * 2}
  - node: publish
    with: {topic: out}
`, nil)
	bad := h.publish("in", `{"qty": "not a number"}`)
	notJSON := h.publish("in", `plain text`)
	h.publish("in", `{"qty": 21}`)

	out := h.consume("out", 1)
	assert.EqualValues(t, 42, payloadOf(t, out[0])["total"], "good messages still flow after bad ones")

	dl := h.consume("strict.dlq", 2)
	byID := map[string]*message.Message{}
	for _, m := range dl {
		byID[m.Metadata.Get(flows.MetaSourceID)] = m
	}
	require.Contains(t, byID, bad)
	require.Contains(t, byID, notJSON)
	m := byID[bad]
	assert.Equal(t, `{"qty": "not a number"}`, string(m.Payload), "the input is dead-lettered unchanged")
	assert.Equal(t, "strict", m.Metadata.Get(flows.MetaFlow))
	assert.Equal(t, "total", m.Metadata.Get(flows.MetaStep))
	assert.Equal(t, "transform", m.Metadata.Get(flows.MetaNode))
	assert.Contains(t, m.Metadata.Get(flows.MetaError), "invalid operation")
	assert.Equal(t, "1", m.Metadata.Get(flows.MetaAttempts), "a permanent error is not retried")
	assert.Equal(t, "in", m.Metadata.Get(flows.MetaSourceTopic))

	runs := h.waitRuns(state.Filter{Flow: "strict", Input: bad}, 1)
	require.Len(t, runs, 1)
	assert.Equal(t, state.StatusDeadLettered, runs[0].Status)
	assert.Equal(t, "total", runs[0].Step)
	assert.NotEmpty(t, runs[0].Error)
}

// flaky fails transiently a set number of times, or panics.
type flaky struct {
	failures *int
	panics   bool
}

func (f flaky) Process(ctx context.Context, env *nodes.Envelope) error {
	if f.panics {
		panic("boom")
	}
	if *f.failures > 0 {
		*f.failures--
		return io.ErrUnexpectedEOF
	}
	env.SetResult("ok")
	return nil
}

func TestEngineRetriesTransientErrorsAndSurvivesPanics(t *testing.T) {
	failures := 2
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.flaky", Summary: "fails, then works",
		Fields: []nodes.Field{{Name: "panic", Kind: nodes.Bool, Default: false}},
		New: func(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
			return flaky{failures: &failures, panics: c.Bool("panic")}, nil
		},
	}))
	h := start(t, `
name: retrying
on: {topic: jobs}
retry: {max_attempts: 3, backoff: 1ms, max_backoff: 5ms}
steps:
  - id: panicky
    node: test.flaky
    when: payload.panic == true
    with: {panic: true}
  - id: work
    node: test.flaky
  - node: publish
    with: {topic: done, payload: '{"result": steps.work, "id": payload.id}'}
`, reg)
	panicID := h.publish("jobs", `{"id": 1, "panic": true}`)
	h.publish("jobs", `{"id": 2}`)
	done := h.consume("done", 1)
	assert.Equal(t, map[string]any{"result": "ok", "id": 2.0}, payloadOf(t, done[0]))
	assert.Equal(t, 0, failures)

	dl := h.consume("retrying.dlq", 1)
	assert.Equal(t, panicID, dl[0].Metadata.Get(flows.MetaSourceID))
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "panic in test.flaky: boom")

	runs := h.waitRuns(state.Filter{Flow: "retrying", Status: state.StatusSucceeded}, 1)
	require.Len(t, runs, 1)
	var work state.StepRun
	for _, s := range runs[0].Steps {
		if s.ID == "work" {
			work = s
		}
	}
	assert.Equal(t, 3, work.Attempts, "two transient failures, then success")
	assert.Equal(t, "skipped", runs[0].Steps[0].Status)
}

func jpegBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	var buf bytes.Buffer
	require.NoError(t, jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}))
	return buf.Bytes()
}

func TestEngineBucketTriggerThumbnails(t *testing.T) {
	h := start(t, `
name: thumbs
on: {bucket: uploads, suffix: [.jpg, .png]}
steps:
  - id: thumb
    node: image.thumbnail
    with: {width: 64, height: 64}
  - id: save
    node: storage.put
    with: {bucket: thumbnails}
  - node: publish
    with:
      topic: thumbnails.done
      payload: '{"key": object.key, "width": steps.thumb.width, "height": steps.thumb.height, "etag": steps.save.etag}'
`, nil)
	ctx := t.Context()
	// Dropped like a user would: written straight into the folder.
	require.NoError(t, os.WriteFile(filepath.Join(h.dir, "buckets", "uploads", "cat.jpg"), jpegBytes(t, 400, 200), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(h.dir, "buckets", "uploads", "notes.txt"), []byte("ignored by suffix"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(h.dir, "buckets", "uploads", "broken.jpg"), []byte("not a jpeg"), 0o644))

	done := h.consume("thumbnails.done", 1)
	p := payloadOf(t, done[0])
	assert.Equal(t, "cat.jpg", p["key"])
	assert.EqualValues(t, 64, p["width"])
	assert.EqualValues(t, 32, p["height"])

	data, info, err := h.store.ReadAll(ctx, "thumbnails", "cat.jpg", 0)
	require.NoError(t, err)
	assert.Equal(t, p["etag"], info.ETag)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, "jpeg", format)
	assert.Equal(t, 64, cfg.Width)
	assert.Equal(t, 32, cfg.Height)

	dl := h.consume("thumbs.dlq", 1)
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "uploads/broken.jpg")
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "not a supported image")
	_, err = h.store.Stat(ctx, "thumbnails", "broken.jpg")
	assert.ErrorIs(t, err, storage.ErrNotFound)
}

// barrier returns only once `want` calls are inside Process at the same
// time, so a flow using it finishes only if runs really overlap.
type barrier struct {
	mu      sync.Mutex
	in      int
	want    int
	release chan struct{}
}

func (b *barrier) Process(ctx context.Context, env *nodes.Envelope) error {
	b.mu.Lock()
	b.in++
	if b.in == b.want {
		close(b.release)
	}
	b.mu.Unlock()
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestEngineConcurrencyOverlapsRuns(t *testing.T) {
	bar := &barrier{want: 2, release: make(chan struct{})}
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.barrier", Summary: "waits for company",
		New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return bar, nil },
	}))
	h := start(t, `
name: parallel
on: {topic: work}
concurrency: 2
timeout: 20s
steps:
  - node: test.barrier
  - node: publish
    with: {topic: finished}
`, reg)
	// Different partition keys: with 2 partitions, find two keys that land
	// in different ones by publishing several.
	for i := 0; i < 8; i++ {
		m := message.NewMessage(fmt.Sprintf("w-%d", i), []byte(fmt.Sprintf(`{"n":%d}`, i)))
		require.NoError(t, h.broker.Publisher().Publish("work", m))
	}
	got := h.consume("finished", 8)
	assert.Len(t, got, 8, "runs overlapped: the barrier released")
}

// gate blocks runs until released, telling when one has entered.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Process(ctx context.Context, env *nodes.Envelope) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestEngineDrainsRunsInFlightAndRestartsWithoutRedelivery(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.gate", Summary: "waits to be released",
		New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return g, nil },
	}))
	flow := `
name: slow
on: {topic: work}
steps:
  - node: test.gate
  - node: publish
    with: {topic: finished}
`
	dir := t.TempDir()
	h := startIn(t, dir, flow, reg)
	h.publish("work", `{"n": 1}`)
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not start")
	}
	h.cancel() // SIGTERM, as cmd/sluice does
	h.cancel = nil
	select {
	case err := <-h.done:
		t.Fatalf("engine stopped with a run in flight: %v", err)
	default:
	}
	close(g.release)
	select {
	case err := <-h.done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("engine did not stop after the run finished")
	}
	require.NoError(t, h.state.Close())
	require.NoError(t, h.broker.Close())

	// A new engine on the same files: the drained run was acked, so it is
	// not redelivered; a message published now is processed.
	h2 := startIn(t, dir, flow, reg)
	h2.publish("work", `{"n": 2}`)
	out := h2.consume("finished", 2)
	assert.EqualValues(t, 1, payloadOf(t, out[0])["n"])
	assert.EqualValues(t, 2, payloadOf(t, out[1])["n"])
	runs := h2.waitRuns(state.Filter{Flow: "slow"}, 2)
	assert.Len(t, runs, 2, "one run per message: nothing ran twice")
}

func TestEngineBucketRestartDoesNotReplay(t *testing.T) {
	flow := `
name: copy
on: {bucket: inbox}
steps:
  - node: publish
    with: {topic: seen, payload: 'object.key'}
`
	dir := t.TempDir()
	h := startIn(t, dir, flow, nil)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "buckets", "inbox", "a.txt"), []byte("a"), 0o644))
	assert.Equal(t, `"a.txt"`, string(h.consume("seen", 1)[0].Payload))
	h.stop()

	// Files dropped while stopped are picked up at start; old ones are not
	// replayed.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "buckets", "inbox", "b.txt"), []byte("b"), 0o644))
	h2 := startIn(t, dir, flow, nil)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "buckets", "inbox", "c.txt"), []byte("c"), 0o644))
	got := h2.consume("seen", 2) // the reader group read a.txt already
	assert.Equal(t, []string{`"b.txt"`, `"c.txt"`}, []string{string(got[0].Payload), string(got[1].Payload)})
	runs := h2.waitRuns(state.Filter{Flow: "copy"}, 3)
	assert.Len(t, runs, 3, "a.txt ran once, before the restart")
}

// TestEngineBucketReuploadAfterDelete: the same object version uploaded
// again after a delete is a new input (a repeat event of a version is
// not).
func TestEngineBucketReuploadAfterDelete(t *testing.T) {
	dir := t.TempDir()
	h := startIn(t, dir, `
name: copy
on: {bucket: inbox}
steps:
  - node: publish
    with: {topic: seen, payload: 'object.key'}
`, nil)
	path := filepath.Join(dir, "buckets", "inbox", "a.txt")
	put := func() {
		require.NoError(t, os.WriteFile(path, []byte("a"), 0o644))
		// The same bytes and time: the same etag, as S3 gives identical bytes.
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		require.NoError(t, os.Chtimes(path, at, at))
	}
	put()
	assert.Equal(t, `"a.txt"`, string(h.consume("seen", 1)[0].Payload))
	require.NoError(t, os.Remove(path))
	require.Eventually(t, func() bool {
		return h.counter("sluice_bucket_events_total", map[string]string{"bucket": "inbox", "outcome": "published"}) == 2
	}, 10*time.Second, 10*time.Millisecond, "the removal was not seen")
	put()
	assert.Equal(t, `"a.txt"`, string(h.consume("seen", 1)[0].Payload))
	runs := h.waitRuns(state.Filter{Flow: "copy", Status: state.StatusSucceeded}, 2)
	require.Len(t, runs, 2)
	assert.NotEqual(t, runs[0].Input, runs[1].Input)
}

// startOnB is startOn for benchmarks.
func startOnB(b *testing.B, dir, brokerURL, storageURL, flowYAML string) *harness {
	return startOn(b, dir, brokerURL, storageURL, flowYAML, nil)
}

func TestSeveralFlowsOnOneTopicEachGetEveryMessage(t *testing.T) {
	h := start(t, `
name: audit
on: {topic: orders}
steps:
  - node: publish
    with: {topic: audited}
---
name: bill
on: {topic: orders}
steps:
  - node: publish
    with: {topic: billed}
---
name: bill-shared-a
on: {topic: invoices, group: billing}
steps:
  - node: publish
    with: {topic: invoiced, payload: '{"by": "a", "n": payload.n}'}
---
name: bill-shared-b
on: {topic: invoices, group: billing}
steps:
  - node: publish
    with: {topic: invoiced, payload: '{"by": "b", "n": payload.n}'}
`, nil)
	for i := 0; i < 5; i++ {
		h.publish("orders", fmt.Sprintf(`{"n": %d}`, i))
		h.publish("invoices", fmt.Sprintf(`{"n": %d}`, i))
	}
	assert.Len(t, h.consume("audited", 5), 5)
	assert.Len(t, h.consume("billed", 5), 5)
	// Flows sharing a group share the messages: each invoice is handled once.
	seen := map[float64]int{}
	for _, m := range h.consume("invoiced", 5) {
		seen[payloadOf(t, m)["n"].(float64)]++
	}
	assert.Equal(t, map[float64]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 1}, seen)
	shared := func() int {
		require.NoError(t, h.state.Flush(t.Context()))
		n := 0
		for _, f := range []string{"bill-shared-a", "bill-shared-b"} {
			runs, err := h.state.Runs(t.Context(), state.Filter{Flow: f})
			require.NoError(t, err)
			n += len(runs)
		}
		return n
	}
	require.Eventually(t, func() bool { return shared() >= 5 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 5, shared(), "one run per invoice across the group")
}

// TestDeadLetterReplayAfterFixingTheFlow: a poison message is
// dead-lettered while the rest flow at full speed; after the flow is
// fixed, replaying the dead letter succeeds, linked to it.
func TestDeadLetterReplayAfterFixingTheFlow(t *testing.T) {
	dir := t.TempDir()
	broken := `
name: totals
on: {topic: carts}
retry: {max_attempts: 2, backoff: 1ms}
steps:
  - id: sum
    node: transform
    with: {set: {total: "payload.qty * payload.price"}}
  - node: publish
    with: {topic: totals}
`
	h := startIn(t, dir, broken, nil)
	poison := h.publish("carts", `{"qty": 2, "price": "3"}`)
	for i := 0; i < 20; i++ {
		h.publish("carts", fmt.Sprintf(`{"qty": %d, "price": 1}`, i))
	}
	assert.Len(t, h.consume("totals", 20), 20, "the rest are processed")
	var dls []state.DeadLetter
	require.Eventually(t, func() bool {
		var err error
		dls, err = h.state.DeadLetters(t.Context(), state.DeadLetterFilter{Flow: "totals"})
		require.NoError(t, err)
		return len(dls) == 1
	}, 10*time.Second, 10*time.Millisecond)
	dl := dls[0]
	assert.Equal(t, poison, dl.SourceID)
	assert.Equal(t, "carts", dl.SourceTopic)
	assert.Equal(t, "sum", dl.Step)
	assert.Equal(t, "transform", dl.Node)
	assert.Contains(t, dl.Error, "invalid operation")
	assert.JSONEq(t, `{"qty": 2, "price": "3"}`, string(dl.Payload))
	h.stop()

	fixed := strings.Replace(broken, `payload.qty * payload.price`, `payload.qty * float(payload.price)`, 1)
	h = startIn(t, dir, fixed, nil)
	n, err := flows.ReplayDeadLetters(t.Context(), h.broker.Publisher(), h.state, state.DeadLetterFilter{Flow: "totals"}, "", nil)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	out := h.consumeAs("after-replay", "totals", 21)
	last := out[20]
	assert.EqualValues(t, 6, payloadOf(t, last)["total"])
	assert.Equal(t, dl.ID, last.Metadata.Get(flows.MetaReplayOf), "the output links back to the dead letter")

	left, err := h.state.DeadLetters(t.Context(), state.DeadLetterFilter{Flow: "totals"})
	require.NoError(t, err)
	assert.Empty(t, left, "a replayed dead letter is no longer pending")
	all, err := h.state.DeadLetters(t.Context(), state.DeadLetterFilter{Flow: "totals", Replayed: true})
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.NotNil(t, all[0].Replayed)
}

type countingNode struct{ n *atomic.Int64 }

func (c countingNode) Process(context.Context, *nodes.Envelope) error { c.n.Add(1); return nil }

// countingRegistry is the global registry with test.count, a node
// counting its calls in calls.
func countingRegistry(t *testing.T, calls *atomic.Int64) *nodes.Registry {
	t.Helper()
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.count", Summary: "counts calls",
		New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return countingNode{calls}, nil },
	}))
	return reg
}

// TestRedeliveredInputRunsOnce: an input delivered again after its run
// completed (a crash between the completion commit and the ack) is acked
// as a duplicate, its steps not run again, nothing published twice.
func TestRedeliveredInputRunsOnce(t *testing.T) {
	var calls atomic.Int64
	reg := countingRegistry(t, &calls)
	h := start(t, `
name: once
on: {topic: in}
steps:
  - node: test.count
  - node: publish
    with: {topic: out}
`, reg)
	for _, id := range []string{"order-1", "order-2", "order-1"} {
		require.NoError(t, h.broker.Publisher().Publish("in", message.NewMessage(id, []byte(`{}`))))
	}
	var runs []state.Run
	require.Eventually(t, func() bool {
		require.NoError(t, h.state.Flush(t.Context()))
		var err error
		runs, err = h.state.Runs(t.Context(), state.Filter{Flow: "once"})
		require.NoError(t, err)
		return len(runs) == 3
	}, 20*time.Second, 10*time.Millisecond)
	status := map[string]int{}
	for _, r := range runs {
		status[r.Input+" "+r.Status]++
		if r.Status == state.StatusSucceeded {
			assert.EqualValues(t, 2, r.BytesIn, "the {} payload")
			assert.EqualValues(t, 2, r.BytesOut, "published as is")
		}
	}
	assert.Equal(t, map[string]int{"order-1 succeeded": 1, "order-2 succeeded": 1, "order-1 duplicate": 1}, status)
	assert.EqualValues(t, 2, calls.Load())
	assert.Len(t, h.consume("out", 2), 2)
	assert.EqualValues(t, 1, h.counter("sluice_runs_total", map[string]string{"flow": "once", "status": "duplicate"}))
}

func TestStepRetryOverridesFlowRetryAndMaxElapsed(t *testing.T) {
	failures := 2
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.flaky", Summary: "fails, then works",
		New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return flaky{failures: &failures}, nil },
	}))
	h := start(t, `
name: steps-retry
on: {topic: jobs}
retry: {max_attempts: 1}
steps:
  - id: patient
    node: test.flaky
    when: payload.id == 1
    retry: {max_attempts: 5, backoff: 1ms}
  - id: hasty
    node: test.flaky
    when: payload.id == 2
    retry: {max_attempts: 10, backoff: 1h, max_elapsed: 100ms}
  - node: publish
    with: {topic: done}
`, reg)
	h.publish("jobs", `{"id": 1}`)
	h.consume("done", 1)
	assert.Equal(t, 0, failures, "the step's 5 attempts, not the flow's 1")

	failures = 1
	h.publish("jobs", `{"id": 2}`)
	dl := h.consume("steps-retry.dlq", 1)
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "gave up after 1 attempts", "a 1h backoff would pass max_elapsed: no wait")
	assert.Equal(t, "1", dl[0].Metadata.Get(flows.MetaAttempts))
}

// TestLockedStateDatabaseStopsAcking: while the state database cannot be
// written (another process holds its write lock, as a disk that is full
// would fail it), the engine reports unready and leaves inputs unacked;
// once writable, it records the runs it held and processes the rest.
func TestLockedStateDatabaseStopsAcking(t *testing.T) {
	stateBusyTimeout = 100 * time.Millisecond
	defer func() { stateBusyTimeout = 30 * time.Second }()
	dir := t.TempDir()
	h := startWith(t, dir, "sqlite://"+filepath.Join(dir, "queue.db")+"?poll=10ms&resend=50ms", `
name: guarded
on: {topic: in}
steps:
  - node: publish
    with: {topic: out}
`, nil)
	// Outputs with the time they arrived.
	type arrival struct {
		n  float64
		at time.Time
	}
	arrivals := make(chan arrival, 10)
	sub, err := h.broker.Subscriber("watch")
	require.NoError(t, err)
	defer sub.Close()
	outs, err := sub.Subscribe(t.Context(), "out")
	require.NoError(t, err)
	go func() {
		for m := range outs {
			m.Ack()
			var p map[string]any
			_ = json.Unmarshal(m.Payload, &p)
			arrivals <- arrival{p["n"].(float64), time.Now()}
		}
	}()
	seen := map[float64]bool{}
	next := func() arrival { // the next new output (retries repeat theirs)
		for {
			select {
			case a := <-arrivals:
				if !seen[a.n] {
					seen[a.n] = true
					return a
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no output")
				return arrival{}
			}
		}
	}
	h.publish("in", `{"n": 1}`)
	assert.EqualValues(t, 1, next().n)

	// Another process takes the state database's write lock.
	locker, err := sql.Open("sqlite3", filepath.Join(dir, "state.db"))
	require.NoError(t, err)
	defer locker.Close()
	conn, err := locker.Conn(t.Context())
	require.NoError(t, err)
	_, err = conn.ExecContext(t.Context(), "BEGIN IMMEDIATE")
	require.NoError(t, err)

	h.publish("in", `{"n": 2}`) // processed, but its completion cannot be committed: not acked
	assert.EqualValues(t, 2, next().n)
	require.Eventually(t, func() bool { return h.engine.Err() != nil }, 10*time.Second, 10*time.Millisecond)
	assert.ErrorContains(t, h.engine.Err(), "locked")
	h.publish("in", `{"n": 3}`) // left unacked while the database is locked

	unlocked := time.Now()
	_, err = conn.ExecContext(t.Context(), "ROLLBACK")
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	a3 := next()
	assert.EqualValues(t, 3, a3.n)
	assert.True(t, a3.at.After(unlocked), "n=3 ran only once the database was writable")
	require.Eventually(t, func() bool { return h.engine.Err() == nil }, 10*time.Second, 10*time.Millisecond)
	runs := h.waitRuns(state.Filter{Flow: "guarded", Status: state.StatusSucceeded}, 3)
	assert.Len(t, runs, 3, "n=2 and n=3 completed once the lock was gone")
}

func TestScheduleTriggerTicks(t *testing.T) {
	h := start(t, `
name: every-second
on: {schedule: "* * * * * *"}
steps:
  - node: publish
    with: {topic: ticks}
`, nil)
	got := h.consume("ticks", 2)
	t1, t2 := payloadOf(t, got[0]), payloadOf(t, got[1])
	a, err := time.Parse(time.RFC3339, t1["time"].(string))
	require.NoError(t, err)
	b, err := time.Parse(time.RFC3339, t2["time"].(string))
	require.NoError(t, err)
	assert.Equal(t, time.Second, b.Sub(a), "consecutive scheduled times")
	assert.Equal(t, "* * * * * *", t1["schedule"])
	assert.Equal(t, false, t1["missed"])
	assert.NotEqual(t, got[0].UUID, got[1].UUID)
}

// TestScheduleCatchesUpAMissedTick: a daily flow that last ran two days
// ago runs the latest missed tick once when it starts.
func TestScheduleCatchesUpAMissedTick(t *testing.T) {
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "state.db"))
	require.NoError(t, err)
	st.Record(state.Run{ID: "old", Flow: "nightly", Trigger: "schedule:0 3 * * *", Input: "x", Status: state.StatusSucceeded, Started: time.Now().Add(-49 * time.Hour)})
	require.NoError(t, st.Close())

	h := startIn(t, dir, `
name: nightly
on: {schedule: "0 3 * * *", timezone: UTC}
steps:
  - node: publish
    with: {topic: reports}
`, nil)
	tick := payloadOf(t, h.consume("reports", 1)[0])
	assert.Equal(t, true, tick["missed"])
	at, err := time.Parse(time.RFC3339, tick["time"].(string))
	require.NoError(t, err)
	now := time.Now().UTC()
	latest := time.Date(now.Year(), now.Month(), now.Day(), 3, 0, 0, 0, time.UTC)
	if latest.After(now) {
		latest = latest.AddDate(0, 0, -1)
	}
	assert.Equal(t, latest, at, "the latest 03:00 before now, once")
}

// endNode ends the run when the payload says so (as state.transition does
// for a stale timer).
type endNode struct{}

func (endNode) Process(_ context.Context, env *nodes.Envelope) error {
	if p, _ := env.Payload.(map[string]any); p["end"] == true {
		env.SetRoute(nodes.Route{End: true})
	}
	return nil
}

// TestStepEndsRun: a step that ends the run makes it succeed without its
// later steps (which would fail here); other inputs go on as usual.
func TestStepEndsRun(t *testing.T) {
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.end", Summary: "ends runs that ask to",
		New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return endNode{}, nil },
	}))
	h := start(t, `
name: ends
on: {topic: in}
steps:
  - node: test.end
  - node: transform
    with:
      set: {double: payload.n * 2}
  - node: publish
    with: {topic: out}
`, reg)
	ended := h.publish("in", `{"end": true, "n": "not a number"}`)
	h.publish("in", `{"n": 21}`)
	out := h.consume("out", 1)
	assert.EqualValues(t, 42, payloadOf(t, out[0])["double"])
	runs := h.waitRuns(state.Filter{Flow: "ends", Input: ended}, 1)
	require.Len(t, runs, 1)
	assert.Equal(t, state.StatusSucceeded, runs[0].Status)
	require.Len(t, runs[0].Steps, 1, "the steps after the end did not run")
	assert.Equal(t, "test.end", runs[0].Steps[0].Node)
}

// TestRunRecordsWhatItWroteAndPublished: each step's record lists the
// objects it wrote and the topics of the messages it emitted (a switch
// route included); a failed run published nothing.
func TestRunRecordsWhatItWroteAndPublished(t *testing.T) {
	h := start(t, `
name: outs
on: {topic: in}
retry: {max_attempts: 1}
steps:
  - id: save
    node: storage.put
    with: {bucket: out, key: '{{ payload.id }}.json'}
  - id: fan
    node: publish
    with: {topics: [a, b]}
  - id: check
    node: transform
    with:
      set: {double: payload.n * 2}
  - id: route
    node: switch
    with:
      cases:
        - when: 'true'
          topic: c
`, nil)
	good := h.publish("in", `{"id": "x1", "n": 1}`)
	bad := h.publish("in", `{"id": "x2", "n": "NaN"}`)
	h.consume("c", 1)
	runs := h.waitRuns(state.Filter{Flow: "outs", Input: good}, 1)
	require.Len(t, runs[0].Steps, 4)
	assert.Equal(t, []string{"out/x1.json"}, runs[0].Steps[0].Wrote)
	assert.Equal(t, []string{"a", "b"}, runs[0].Steps[1].Published)
	assert.Empty(t, runs[0].Steps[2].Published)
	assert.Equal(t, []string{"c"}, runs[0].Steps[3].Published)

	runs = h.waitRuns(state.Filter{Flow: "outs", Input: bad}, 1)
	require.Equal(t, state.StatusDeadLettered, runs[0].Status)
	require.Len(t, runs[0].Steps, 3)
	assert.Equal(t, []string{"out/x2.json"}, runs[0].Steps[0].Wrote, "an object written stays written")
	assert.Empty(t, runs[0].Steps[1].Published, "a failed run publishes nothing")
}

// TestRecordFailuresKeepsOnlyFailedRuns: a flow with `record: failures`
// leaves no record of a run that succeeded and a record of one that was
// dead-lettered; a succeeded input is still completed (delivered again,
// it is a duplicate, its steps not run again), and every run is counted.
func TestRecordFailuresKeepsOnlyFailedRuns(t *testing.T) {
	var calls atomic.Int64
	reg := countingRegistry(t, &calls)
	h := start(t, `
name: quiet
on: {topic: in}
record: failures
retry: {max_attempts: 1}
steps:
  - node: test.count
  - node: transform
    with: {set: {double: payload.n * 2}}
  - node: publish
    with: {topic: out}
`, reg)
	for _, m := range []struct{ id, body string }{{"order-1", `{"n": 1}`}, {"order-2", `{"n": "x"}`}, {"order-1", `{"n": 1}`}, {"order-3", `{"n": 3}`}} {
		require.NoError(t, h.broker.Publisher().Publish("in", message.NewMessage(m.id, []byte(m.body))))
	}
	assert.Len(t, h.consume("out", 2), 2)
	assert.Len(t, h.consume("quiet.dlq", 1), 1)
	count := func(status string) float64 {
		return h.counter("sluice_runs_total", map[string]string{"flow": "quiet", "status": status})
	}
	require.Eventually(t, func() bool { return count("duplicate") == 1 }, 20*time.Second, 10*time.Millisecond)
	assert.EqualValues(t, 2, count("succeeded"))
	assert.EqualValues(t, 1, count("dead_lettered"))
	assert.EqualValues(t, 3, calls.Load(), "order-1 ran once")

	require.NoError(t, h.state.Flush(t.Context()))
	runs, err := h.state.Runs(t.Context(), state.Filter{Flow: "quiet"})
	require.NoError(t, err)
	require.Len(t, runs, 1, "only the failure is recorded")
	assert.Equal(t, "order-2", runs[0].Input)
	assert.Equal(t, state.StatusDeadLettered, runs[0].Status)
	done, err := h.state.CompletedAll(t.Context(), "quiet", []string{"order-1", "order-2", "order-3", "order-4"})
	require.NoError(t, err)
	assert.Len(t, done, 3, "every input that ran is completed")
}
