package flows_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

// archived reads every object of a bucket (gunzipped when compressed),
// keyed by object key, each a list of its lines.
func archived(t testing.TB, store *storage.Store, bucket string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	require.NoError(t, store.List(t.Context(), bucket, "", func(o storage.ObjectInfo) error {
		data, _, err := store.ReadAll(t.Context(), bucket, o.Key, 0)
		if err != nil {
			return err
		}
		if strings.HasSuffix(o.Key, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return fmt.Errorf("%s: %w", o.Key, err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				return fmt.Errorf("%s: %w", o.Key, err)
			}
		}
		out[o.Key] = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		return nil
	}))
	return out
}

func lineCount(objs map[string][]string) int {
	n := 0
	for _, lines := range objs {
		n += len(lines)
	}
	return n
}

func publishLogs(t testing.TB, b brokers.Broker, topic string, from, n int, key func(int) string) {
	t.Helper()
	var msgs []*message.Message
	for i := from; i < from+n; i++ {
		level := "info"
		if i%10 == 0 {
			level = "error"
		}
		m := message.NewMessage(fmt.Sprintf("log-%06d", i), fmt.Appendf(nil, `{"n":%d,"level":%q,"msg":"request served"}`, i, level))
		if key != nil {
			m.Metadata.Set(brokers.MetaPartitionKey, key(i))
		}
		msgs = append(msgs, m)
		if len(msgs) == 500 {
			require.NoError(t, b.Publisher().Publish(topic, msgs...))
			msgs = nil
		}
	}
	if len(msgs) > 0 {
		require.NoError(t, b.Publisher().Publish(topic, msgs...))
	}
}

// numbers returns the "n" of each archived NDJSON line, per object.
func numbers(t testing.TB, objs map[string][]string) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for k, lines := range objs {
		for _, l := range lines {
			var v struct{ N int }
			require.NoError(t, json.Unmarshal([]byte(l), &v), "%s: %q", k, l)
			out[k] = append(out[k], v.N)
		}
	}
	return out
}

const archiveFlow = `
name: logs
on: {topic: logs}
steps:
  - node: publish
    when: type(payload) == "map" && payload.level == "error"
    with: {topic: alerts}
  - node: archive
    with: {bucket: archive, max_count: 100, max_wait: 300ms}
`

func TestArchiveBatchesRoutesAndDeadLetters(t *testing.T) {
	// Batches close on their count only here (never on the clock, which a
	// loaded machine would make close early).
	h := start(t, strings.Replace(archiveFlow, "max_wait: 300ms", "max_wait: 5m", 1), nil)
	publishLogs(t, h.broker, "logs", 0, 150, nil)
	require.NoError(t, h.broker.Publisher().Publish("logs", message.NewMessage("not-json", []byte("plain text line"))))
	publishLogs(t, h.broker, "logs", 150, 149, nil)

	var objs map[string][]string
	require.Eventually(t, func() bool { objs = archived(t, h.store, "archive"); return lineCount(objs) >= 299 }, 20*time.Second, 20*time.Millisecond)
	runs := h.waitRuns(state.Filter{Flow: "logs", Status: state.StatusSucceeded}, 3)

	// 300 messages, 100 per batch: objects named after the first offset
	// of each (the embedded queue's offsets start at 1).
	day := time.Now().UTC().Format("2006-01-02")
	var keys []string
	for k := range objs {
		keys = append(keys, k)
		assert.True(t, strings.HasPrefix(k, "logs/dt="+day+"/hour="), k)
	}
	sort.Strings(keys)
	parts := map[string]int{}
	for k, ns := range numbers(t, objs) {
		parts[k[strings.LastIndex(k, "/")+1:]] = len(ns)
		for i := 1; i < len(ns); i++ {
			assert.Equal(t, ns[i-1]+1, ns[i], "%s: records in publish order", k)
		}
	}
	assert.Equal(t, map[string]int{"part-0-1.ndjson.gz": 100, "part-0-101.ndjson.gz": 99, "part-0-201.ndjson.gz": 100}, parts,
		"the non-JSON message is refused by its batch: 99 records there")
	assert.Len(t, runs, 3)
	for _, r := range runs {
		assert.Equal(t, "archive", r.Steps[0].Node)
		assert.Positive(t, r.BytesOut)
	}

	alerts := h.consume("alerts", 30)
	assert.Len(t, alerts, 30, "every tenth line is an error")
	dl := h.consume("logs.dlq", 1)
	assert.Equal(t, "not-json", dl[0].Metadata.Get(flows.MetaSourceID))
	assert.Contains(t, dl[0].Metadata.Get(flows.MetaError), "not JSON")
	h.waitRuns(state.Filter{Flow: "logs", Status: state.StatusDeadLettered}, 1)
}

func TestArchiveFlushesOnShutdownAndResumes(t *testing.T) {
	dir := t.TempDir()
	flow := strings.Replace(archiveFlow, "max_count: 100, max_wait: 300ms", "max_count: 100000, max_wait: 1h", 1)
	h := startIn(t, dir, flow, nil)
	publishLogs(t, h.broker, "logs", 0, 40, nil)
	require.Eventually(t, func() bool {
		return h.counter("sluice_messages_received_total", map[string]string{"flow": "logs"}) == 40
	}, 20*time.Second, 10*time.Millisecond)
	assert.Empty(t, archived(t, h.store, "archive"), "no limit reached: the batch is open")
	h.stop()
	objs := archived(t, h.store, "archive")
	require.Len(t, objs, 1, "the partial batch was written at shutdown")
	assert.Equal(t, 40, lineCount(objs))

	h = startIn(t, dir, flow, nil)
	publishLogs(t, h.broker, "logs", 40, 10, nil)
	require.Eventually(t, func() bool {
		return h.counter("sluice_messages_received_total", map[string]string{"flow": "logs"}) == 10
	}, 20*time.Second, 10*time.Millisecond, "only the new messages: the shutdown committed the batch")
	h.stop()
	seen := map[int]int{}
	for _, ns := range numbers(t, archived(t, h.store, "archive")) {
		for _, n := range ns {
			seen[n]++
		}
	}
	assert.Len(t, seen, 50)
	for n, c := range seen {
		assert.Equal(t, 1, c, "line %d", n)
	}
}

// flakyBatcher fails its first writes, then keeps the records it was given.
type flakyBatcher struct {
	mu       sync.Mutex
	failures int
	written  [][]string
}

func (f *flakyBatcher) Process(context.Context, *nodes.Envelope) error { return nil }
func (f *flakyBatcher) BatchLimits() nodes.BatchLimits {
	return nodes.BatchLimits{Count: 10, Bytes: 1 << 20, Wait: time.Hour}
}
func (f *flakyBatcher) NewBatch(nodes.BatchStart) nodes.Batch { return &flakyBatch{f: f} }

type flakyBatch struct {
	f    *flakyBatcher
	recs []string
}

func (b *flakyBatch) Add(r []byte) error { b.recs = append(b.recs, string(r)); return nil }
func (b *flakyBatch) Size() int64        { return int64(len(b.recs)) }
func (b *flakyBatch) Flush(context.Context) (nodes.Written, error) {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	if b.f.failures > 0 {
		b.f.failures--
		return nodes.Written{}, errors.New("store unavailable")
	}
	b.f.written = append(b.f.written, b.recs)
	return nodes.Written{Location: "memory", Bytes: int64(len(b.recs))}, nil
}

func TestBatchWriteFailuresAreRetriedBeforeTheCommit(t *testing.T) {
	fb := &flakyBatcher{failures: 3}
	reg := nodes.Global().Clone()
	reg.Register(nodes.Spec{Type: "test.batch", Summary: "test", New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return fb, nil }})
	h := start(t, `
name: batches
on: {topic: in}
retry: {backoff: 5ms, max_backoff: 10ms}
steps:
  - node: test.batch
`, reg)
	publishLogs(t, h.broker, "in", 0, 20, nil)
	runs := h.waitRuns(state.Filter{Flow: "batches"}, 2)
	fb.mu.Lock()
	defer fb.mu.Unlock()
	require.Len(t, fb.written, 2)
	assert.Len(t, fb.written[0], 10)
	assert.Len(t, fb.written[1], 10)
	attempts := []int{runs[0].Attempts, runs[1].Attempts}
	sort.Ints(attempts)
	assert.Equal(t, []int{1, 4}, attempts, "the first batch was written at the fourth attempt")
}

// lossyCommits is a broker whose first stream commits fail, as if the
// process died between writing a batch and committing it.
type lossyCommits struct {
	brokers.Broker
	fails atomic.Int32
}

func (b *lossyCommits) Stream(ctx context.Context, topic, group string, fn func(brokers.Stream) error) error {
	return b.Broker.(brokers.Streamer).Stream(ctx, topic, group, func(s brokers.Stream) error {
		return fn(lossyStream{Stream: s, b: b})
	})
}

type lossyStream struct {
	brokers.Stream
	b *lossyCommits
}

func (s lossyStream) Commit(ctx context.Context, m *message.Message) error {
	if s.b.fails.Add(-1) >= 0 {
		return errors.New("connection lost")
	}
	return s.Stream.Commit(ctx, m)
}

// A batch written but not committed is consumed again and written again
// under the same key: every record is archived once.
func TestArchiveRewritesAnUncommittedBatchUnderItsKey(t *testing.T) {
	dir := t.TempDir()
	b, err := brokers.Open(t.Context(), "sqlite://"+filepath.Join(dir, "queue.db")+"?poll=10ms", nil)
	require.NoError(t, err)
	lossy := &lossyCommits{Broker: b}
	lossy.fails.Store(1)
	// Batches close on their count only (never on the clock, which a
	// loaded machine would make close early): two batches of 125.
	h := startOnBroker(t, dir, lossy, "fs://"+filepath.Join(dir, "buckets"), `
name: logs
on: {topic: logs}
steps:
  - node: archive
    with: {bucket: archive, max_count: 125, max_wait: 5m}
`, nil)
	publishLogs(t, h.broker, "logs", 0, 250, nil)

	var objs map[string][]string
	require.Eventually(t, func() bool { objs = archived(t, h.store, "archive"); return lineCount(objs) >= 250 }, 20*time.Second, 20*time.Millisecond)
	h.waitRuns(state.Filter{Flow: "logs", Status: state.StatusSucceeded}, 2)
	assert.Equal(t, 250, lineCount(objs), "the first batch was written twice, under one key")
	assert.Len(t, objs, 2)
	assert.Less(t, lossy.fails.Load(), int32(0), "the first commit failed, later ones were made")
}

// A switch before the archive that routes a message to a topic ends its
// run there: it is published, not archived.
func TestArchiveSkipsMessagesRoutedAway(t *testing.T) {
	h := start(t, `
name: logs
on: {topic: logs}
steps:
  - node: switch
    with:
      cases:
        - when: payload.level == "error"
          topic: alerts
  - node: archive
    with: {bucket: archive, max_count: 50, max_wait: 200ms}
`, nil)
	publishLogs(t, h.broker, "logs", 0, 100, nil)
	var objs map[string][]string
	require.Eventually(t, func() bool { objs = archived(t, h.store, "archive"); return lineCount(objs) >= 90 }, 20*time.Second, 20*time.Millisecond)
	h.waitRuns(state.Filter{Flow: "logs", Status: state.StatusSucceeded}, 2)
	assert.Equal(t, 90, lineCount(objs))
	for _, lines := range objs {
		for _, l := range lines {
			assert.NotContains(t, l, `"level":"error"`)
		}
	}
	assert.Len(t, h.consume("alerts", 10), 10)
}

// A message whose record the archive refuses fails as a whole: what its
// earlier steps published is dropped with it, as in any failed run.
func TestArchiveRefusedRecordPublishesNothing(t *testing.T) {
	h := start(t, `
name: logs
on: {topic: logs}
steps:
  - node: publish
    with: {topic: copies}
  - node: archive
    with: {bucket: archive, max_count: 3, max_wait: 200ms}
`, nil)
	for _, p := range []string{`{"n":1}`, `not json`, `{"n":2}`} {
		require.NoError(t, h.broker.Publisher().Publish("logs", message.NewMessage(p, []byte(p))))
	}
	h.waitRuns(state.Filter{Flow: "logs", Status: state.StatusSucceeded}, 1)
	h.waitRuns(state.Filter{Flow: "logs", Status: state.StatusDeadLettered}, 1)
	assert.Equal(t, 2, lineCount(archived(t, h.store, "archive")))
	copies := h.consume("copies", 2)
	assert.Equal(t, []string{`{"n":1}`, `{"n":2}`}, []string{string(copies[0].Payload), string(copies[1].Payload)},
		"outputs are published in message order: a copy of the refused one would come second")
}
