package flows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
)

// lifecycle records the Start and Close calls of test.life nodes, by tag.
type lifecycle struct {
	mu     sync.Mutex
	events []string
}

func (l *lifecycle) add(ev string) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *lifecycle) count(ev string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e == ev {
			n++
		}
	}
	return n
}

// lifeNode is a Starter and Closer that takes a little time per message,
// so runs are in flight when a reload comes; it refuses messages before
// Start and after Close.
type lifeNode struct {
	tag     string
	l       *lifecycle
	running atomic.Bool
}

func (n *lifeNode) Start(context.Context) error {
	if strings.HasPrefix(n.tag, "broken") {
		return errors.New("cannot start " + n.tag)
	}
	n.running.Store(true)
	n.l.add("start " + n.tag)
	return nil
}
func (n *lifeNode) Close() error {
	if n.running.Swap(false) {
		n.l.add("close " + n.tag)
	}
	return nil
}

func (n *lifeNode) Process(ctx context.Context, env *nodes.Envelope) error {
	if !n.running.Load() {
		return nodes.Permanent(fmt.Errorf("node %s called while not running", n.tag))
	}
	select { // a little work
	case <-time.After(time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

var (
	_ nodes.Starter = (*lifeNode)(nil)
	_ nodes.Closer  = (*lifeNode)(nil)
)

func lifeRegistry(t *testing.T, l *lifecycle) *nodes.Registry {
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{
		Type: "test.life", Summary: "records its lifecycle",
		Fields: []nodes.Field{{Name: "tag", Kind: nodes.String, Required: true}},
		New: func(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
			return &lifeNode{tag: c.String("tag"), l: l}, nil
		},
	}))
	return reg
}

// reload writes flowYAML over the harness's flow file, loads it as
// `sluice run` does, and reloads the engine with it.
func (h *harness) reload(reg *nodes.Registry, flowYAML string) (flows.Report, error) {
	h.t.Helper()
	file := filepath.Join(h.dir, "flow.yaml")
	require.NoError(h.t, os.WriteFile(file, []byte(flowYAML), 0o644))
	fl, err := flows.Loader{Registry: reg, Deps: nodes.Deps{Store: h.store, Logger: quietLogger()}}.Load(file)
	require.NoError(h.t, err)
	return h.engine.Reload(h.t.Context(), fl)
}

const twoFlows = `
name: shaper
on: {topic: in}
steps:
  - node: test.life
    with: {tag: shaper-%[1]s}
  - node: transform
    with:
      set:
        version: '"%[1]s"'
  - node: publish
    with: {topic: shaped}
---
name: other
on: {topic: shaped}
steps:
  - node: test.life
    with: {tag: other}
  - node: publish
    with: {topic: other-out}
`

// TestReloadReplacesAChangedFlowWhileMessagesFlow: messages published
// without pause across a reload that changes one flow's transform are
// each run once and published once; later ones see the new definition;
// the unchanged flow it feeds is not restarted and relays each output
// once; the old nodes are closed after the drain, the new ones started
// before the first run.
func TestReloadReplacesAChangedFlowWhileMessagesFlow(t *testing.T) {
	t.Run("streams", func(t *testing.T) {
		l := &lifecycle{}
		reg := lifeRegistry(t, l)
		replaceWhileFlowing(t, start(t, fmt.Sprintf(twoFlows, "v1"), reg), reg, l)
	})
	t.Run("kafka", func(t *testing.T) {
		if testing.Short() {
			t.Skip("Kafka consumer groups take seconds to settle")
		}
		// The drained stream leaves the group; the new one joins it and
		// goes on from the committed offsets.
		l := &lifecycle{}
		reg := lifeRegistry(t, l)
		replaceWhileFlowing(t, startWith(t, t.TempDir(), kafkaURL(t, 1), fmt.Sprintf(twoFlows, "v1"), reg), reg, l)
	})
	t.Run("router", func(t *testing.T) {
		// One message at a time through a Watermill router per flow.
		l := &lifecycle{}
		reg := lifeRegistry(t, l)
		replaceWhileFlowing(t, startRouted(t, fmt.Sprintf(twoFlows, "v1"), reg), reg, l)
	})
}

// startRouted is start with Options.NoStreams.
func startRouted(t *testing.T, flowYAML string, reg *nodes.Registry) *harness {
	t.Helper()
	dir := t.TempDir()
	b, err := brokers.Open(t.Context(), "sqlite://"+filepath.Join(dir, "queue.db")+"?poll=10ms", nil)
	require.NoError(t, err)
	return startWithOptions(t, dir, b, "fs://"+filepath.Join(dir, "buckets"), flowYAML, reg, func(o *flows.Options) { o.NoStreams = true })
}

func replaceWhileFlowing(t *testing.T, h *harness, reg *nodes.Registry, l *lifecycle) {

	stop := make(chan struct{})
	var published atomic.Int64
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		pace := time.NewTicker(500 * time.Microsecond) // a steady stream, not a flood
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-pace.C:
			}
			m := message.NewMessage(fmt.Sprintf("msg-%05d", i), []byte(fmt.Sprintf(`{"n":%d}`, i)))
			if err := h.broker.Publisher().Publish("in", m); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published.Add(1)
		}
	}()
	// Reload once runs of the first definition are flowing.
	require.Eventually(t, func() bool {
		return h.counter("sluice_runs_total", map[string]string{"flow": "shaper", "status": "succeeded"}) >= 50
	}, 20*time.Second, 5*time.Millisecond)

	before := h.counter("sluice_runs_total", map[string]string{"flow": "shaper", "status": "succeeded"})
	rep, err := h.reload(reg, fmt.Sprintf(twoFlows, "v2"))
	require.NoError(t, err)
	assert.Equal(t, []string{"shaper"}, rep.Changed)
	assert.Equal(t, []string{"other"}, rep.Unchanged)
	assert.Empty(t, rep.Added)
	assert.Empty(t, rep.Removed)

	// Keep publishing until the new definition has run a while.
	require.Eventually(t, func() bool {
		return h.counter("sluice_runs_total", map[string]string{"flow": "shaper", "status": "succeeded"}) >= before+50
	}, 20*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, l.count("start shaper-v2"))
	close(stop)
	<-pubDone
	n := int(published.Load())

	// Every message is run once, succeeded, and published once.
	runs := h.waitRunsOf("shaper", n)
	succeeded := map[string]int{}
	for _, r := range runs {
		if r.Status == state.StatusSucceeded {
			succeeded[r.Input]++
		} else {
			assert.Equal(t, state.StatusDuplicate, r.Status, "run %s of %s: %s", r.ID, r.Input, r.Error)
		}
	}
	assert.Len(t, succeeded, n, "every input succeeded")
	for in, c := range succeeded {
		assert.Equal(t, 1, c, "input %s succeeded %d times", in, c)
	}
	out := h.consume("shaped", n)
	ids := map[string]bool{}
	versions := map[string]int{}
	last := ""
	for _, m := range out {
		assert.False(t, ids[m.UUID], "output %s published twice", m.UUID)
		ids[m.UUID] = true
		v := payloadOf(t, m)["version"].(string)
		versions[v]++
		if last == "v2" {
			assert.Equal(t, "v2", v, "after the first v2 output, every output is v2 (order kept)")
		}
		last = v
	}
	// The unchanged flow fed by the reloaded one got each output once.
	fed := map[string]bool{}
	for _, m := range h.consume("other-out", n) {
		assert.False(t, fed[m.UUID], "%s relayed twice", m.UUID)
		fed[m.UUID] = true
	}
	assert.Positive(t, versions["v1"])
	assert.Positive(t, versions["v2"], "later messages ran on the new definition")
	assert.Equal(t, "v2", last)

	assert.Equal(t, 1, l.count("start other"), "the unchanged flow was not restarted")
	assert.Equal(t, 0, l.count("close other"), "the unchanged flow's nodes stay open")
	assert.Equal(t, 1, l.count("start shaper-v1"))
	assert.Equal(t, 1, l.count("close shaper-v1"), "the old definition's nodes are closed")
	l.mu.Lock()
	order := append([]string(nil), l.events...)
	l.mu.Unlock()
	assert.Less(t, indexOf(order, "close shaper-v1"), indexOf(order, "start shaper-v2"), "drained and closed before the new one started: %v", order)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// waitRunsOf returns the flow's runs once n inputs have finished runs. It
// waits as long as runs keep finishing (a loaded machine is slow, not
// stuck) and fails once none finished for 30s.
func (h *harness) waitRunsOf(flow string, n int) []state.Run {
	h.t.Helper()
	const stall = 30 * time.Second
	seen, since := -1, time.Now()
	for {
		require.NoError(h.t, h.state.Flush(h.t.Context()))
		runs, err := h.state.Runs(h.t.Context(), state.Filter{Flow: flow, Limit: 1_000_000})
		require.NoError(h.t, err)
		inputs := map[string]bool{}
		for _, r := range runs {
			inputs[r.Input] = true
		}
		if len(inputs) >= n {
			return runs
		}
		if len(inputs) > seen {
			seen, since = len(inputs), time.Now()
		} else if time.Since(since) > stall {
			require.Failf(h.t, "runs stopped", "runs of %d of %d inputs of %s, none more for %s", seen, n, flow, stall)
		}
		time.Sleep(10 * time.Millisecond) // a poll interval, not a wait for an outcome
	}
}

const greetFlow = `
name: greet
on:
  http: {path: /greet, methods: [GET]}
steps:
  - node: test.life
    with: {tag: greet-%[1]s}
  - node: transform
    with: {payload: '{"version": "%[1]s"}'}
`

const goneFlow = `
---
name: gone
on: {topic: gone-in}
steps:
  - node: publish
    with: {topic: gone-out}
`

const tickerFlow = `
---
name: ticker
on: {schedule: "* * * * * *"}
steps:
  - node: publish
    with: {topic: ticks}
`

// TestReloadSwapsRoutesAddsAndRemovesFlows: requests sent without pause
// across a reload are all answered, by the old definition and then by
// the new one; a removed flow stops consuming and its metrics go; an
// added schedule runs.
func TestReloadSwapsRoutesAddsAndRemovesFlows(t *testing.T) {
	l := &lifecycle{}
	reg := lifeRegistry(t, l)
	h := start(t, fmt.Sprintf(greetFlow, "v1")+goneFlow, reg)
	srv := httptest.NewServer(h.engine.HTTPHandler())
	defer srv.Close()
	h.publish("gone-in", `{}`)
	h.consume("gone-out", 1)
	require.Eventually(t, func() bool { return hasFlowMetrics(t, h, "gone") }, 5*time.Second, 5*time.Millisecond)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answers sync.Map // version -> count
	var sawV2 atomic.Bool
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := sawV2.Load()
				resp, err := http.Get(srv.URL + "/greet")
				if !assert.NoError(t, err) {
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !assert.Equal(t, http.StatusOK, resp.StatusCode, "answer %s", body) {
					return
				}
				var v struct{ Version string }
				require.NoError(t, json.Unmarshal(body, &v))
				n, _ := answers.LoadOrStore(v.Version, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				if v.Version == "v2" {
					sawV2.Store(true)
				} else if after {
					assert.Equal(t, "v2", v.Version, "a request sent after a new answer got an old one")
				}
			}
		})
	}
	require.Eventually(t, func() bool { _, ok := answers.Load("v1"); return ok }, 5*time.Second, time.Millisecond)
	rep, err := h.reload(reg, fmt.Sprintf(greetFlow, "v2")+tickerFlow)
	require.NoError(t, err)
	assert.Equal(t, flows.Report{Added: []string{"ticker"}, Changed: []string{"greet"}, Removed: []string{"gone"}}, rep)
	require.Eventually(t, func() bool {
		n, ok := answers.Load("v2")
		return ok && n.(*atomic.Int64).Load() >= 20
	}, 10*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()

	assert.Equal(t, 1, l.count("close greet-v1"), "the old definition's nodes are closed")
	assert.Equal(t, 1, l.count("start greet-v2"))
	h.consume("ticks", 1)
	assert.False(t, hasFlowMetrics(t, h, "gone"), "a removed flow's metrics are deleted")

	// A message for the removed flow waits in its consumer group: the
	// flow added back runs it, and only it.
	h.publish("gone-in", `{"late": true}`)
	rep, err = h.reload(reg, fmt.Sprintf(greetFlow, "v2")+tickerFlow+goneFlow)
	require.NoError(t, err)
	assert.Equal(t, flows.Report{Added: []string{"gone"}, Unchanged: []string{"greet", "ticker"}}, rep)
	runs := h.waitRuns(state.Filter{Flow: "gone"}, 2)
	assert.Len(t, runs, 2)
	for _, r := range runs {
		assert.Equal(t, state.StatusSucceeded, r.Status)
	}
	assert.Equal(t, true, payloadOf(t, h.consumeAs("late-reader", "gone-out", 2)[1])["late"])

	// A set of flows that cannot run together changes nothing.
	other := filepath.Join(h.dir, "other.yaml")
	require.NoError(t, os.WriteFile(other, []byte(fmt.Sprintf(greetFlow, "v3")), 0o644))
	loader := flows.Loader{Registry: reg, Deps: nodes.Deps{Store: h.store, Logger: quietLogger()}}
	a, err := loader.Load(filepath.Join(h.dir, "flow.yaml"))
	require.NoError(t, err)
	b, err := loader.Load(other)
	require.NoError(t, err)
	rep, err = h.engine.Reload(t.Context(), append(a, b...))
	require.ErrorContains(t, err, `flow name "greet" is already used`)
	assert.Zero(t, rep.Changes())
	_, _, out := call(t, "GET", srv.URL+"/greet", "")
	assert.Equal(t, "v2", out["version"], "the running definition stays")
	assert.Equal(t, 0, l.count("start greet-v3"))
}

// hasFlowMetrics reports whether any metric has the flow's label.
func hasFlowMetrics(t *testing.T, h *harness, flow string) bool {
	mfs, err := h.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "flow" && l.GetValue() == flow {
					return true
				}
			}
		}
	}
	return false
}

const bucketFlow = `
name: copy
on: {bucket: %s}
steps:
  - node: publish
    with: {topic: seen, payload: '"%s:" + object.key'}
`

// TestReloadBucketFlows: a bucket flow moved to another bucket stops
// watching the first; moved back, the objects it ran before are not
// replayed (the seen index), and one dropped meanwhile runs once.
func TestReloadBucketFlows(t *testing.T) {
	dir := t.TempDir()
	h := startIn(t, dir, fmt.Sprintf(bucketFlow, "inbox", "v1"), nil)
	drop := func(bucket, key string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "buckets", bucket, key), []byte(key), 0o644))
	}
	drop("inbox", "a.txt")
	assert.Equal(t, `"v1:a.txt"`, string(h.consume("seen", 1)[0].Payload))

	rep, err := h.reload(nil, fmt.Sprintf(bucketFlow, "other", "v2"))
	require.NoError(t, err)
	assert.Equal(t, []string{"copy"}, rep.Changed)
	drop("other", "b.txt")
	assert.Equal(t, `"v2:b.txt"`, string(h.consumeAs("r2", "seen", 2)[1].Payload))

	drop("inbox", "c.txt") // not watched now: seen when inbox is watched again
	rep, err = h.reload(nil, fmt.Sprintf(bucketFlow, "inbox", "v3"))
	require.NoError(t, err)
	assert.Equal(t, []string{"copy"}, rep.Changed)
	drop("inbox", "d.txt")
	got := h.consumeAs("r3", "seen", 4)
	var payloads []string
	for _, m := range got[2:] {
		payloads = append(payloads, string(m.Payload))
	}
	assert.ElementsMatch(t, []string{`"v3:c.txt"`, `"v3:d.txt"`}, payloads)
	runs := h.waitRuns(state.Filter{Flow: "copy"}, 4)
	assert.Len(t, runs, 4, "a.txt ran once, before the reloads")
	for _, r := range runs {
		assert.Equal(t, state.StatusSucceeded, r.Status, "run of %s", r.Input)
	}
}

// TestReloadFlowThatFailsToStart: a changed flow whose node fails to
// start is reported and not running, the other flows keep running, and
// a later reload that fixes it starts it.
func TestReloadFlowThatFailsToStart(t *testing.T) {
	l := &lifecycle{}
	reg := lifeRegistry(t, l)
	h := start(t, fmt.Sprintf(twoFlows, "v1"), reg)
	rep, err := h.reload(reg, strings.Replace(fmt.Sprintf(twoFlows, "v2"), "tag: shaper-v2", "tag: broken-v2", 1))
	require.ErrorContains(t, err, "cannot start broken-v2")
	assert.Equal(t, []string{"shaper"}, rep.Changed)
	require.Contains(t, rep.Failed, "shaper")
	assert.Equal(t, 1, l.count("close shaper-v1"), "the old definition was stopped")

	// The flow is down; the one it feeds still runs.
	h.publish("shaped", `{"n": 1}`)
	h.consume("other-out", 1)
	h.publish("in", `{"n": 2}`) // waits for the fixed flow

	rep, err = h.reload(reg, fmt.Sprintf(twoFlows, "v3"))
	require.NoError(t, err)
	assert.Equal(t, []string{"shaper"}, rep.Added, "a flow that failed to start is not running: it is added again")
	assert.Equal(t, []string{"other"}, rep.Unchanged)
	out := h.consume("shaped", 2)
	assert.Equal(t, "v3", payloadOf(t, out[1])["version"])
}

// TestReloadBatchFlow: an archive flow reloaded between publishes writes
// every line once: the drained stream settles its open batch, the new
// definition goes on after the last commit.
func TestReloadBatchFlow(t *testing.T) {
	h := start(t, archiveFlow, nil)
	publishLogs(t, h.broker, "logs", 0, 150, nil)
	require.Eventually(t, func() bool { return lineCount(archived(t, h.store, "archive")) >= 100 }, 20*time.Second, 10*time.Millisecond)
	rep, err := h.reload(nil, strings.Replace(archiveFlow, "max_count: 100,", "max_count: 40,", 1))
	require.NoError(t, err)
	assert.Equal(t, []string{"logs"}, rep.Changed)
	publishLogs(t, h.broker, "logs", 150, 100, nil)

	var objs map[string][]string
	require.Eventually(t, func() bool { objs = archived(t, h.store, "archive"); return lineCount(objs) >= 250 }, 20*time.Second, 10*time.Millisecond)
	seen := map[string]int{}
	for _, lines := range objs {
		for _, l := range lines {
			seen[l]++
		}
	}
	assert.Len(t, seen, 250, "every line archived")
	for l, n := range seen {
		assert.Equal(t, 1, n, "line %s archived %d times", l, n)
	}
	assert.Len(t, h.consume("alerts", 25), 25, "one alert per error line")
}

// TestReloadOnMem: on mem:// (nothing kept) the reloaded flow is
// subscribed again before Reload returns, so what is published after it
// runs on the new definition.
func TestReloadOnMem(t *testing.T) {
	l := &lifecycle{}
	reg := lifeRegistry(t, l)
	h := startWith(t, t.TempDir(), "mem://", fmt.Sprintf(twoFlows, "v1"), reg)
	out := make(chan *message.Message, 10)
	sub, err := h.broker.Subscriber("reader")
	require.NoError(t, err)
	msgs, err := sub.Subscribe(t.Context(), "other-out")
	require.NoError(t, err)
	go func() {
		for m := range msgs {
			m.Ack()
			out <- m
		}
	}()
	next := func() map[string]any {
		t.Helper()
		select {
		case m := <-out:
			return payloadOf(t, m)
		case <-time.After(10 * time.Second):
			t.Fatal("no output")
			return nil
		}
	}
	h.publish("in", `{"n": 1}`)
	assert.Equal(t, "v1", next()["version"])
	_, err = h.reload(reg, fmt.Sprintf(twoFlows, "v2"))
	require.NoError(t, err)
	h.publish("in", `{"n": 2}`)
	assert.Equal(t, "v2", next()["version"])
}
