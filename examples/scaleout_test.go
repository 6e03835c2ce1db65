package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/storage"
)

// scaleOut is a deployment of several `sluice run` processes of the
// orders example on one Kafka (in this test process) and one PostgreSQL
// (SLUICE_TEST_POSTGRES; a schema of its own).
type scaleOut struct {
	t     *testing.T
	flow  string
	procs []*instance
}

func newScaleOut(t *testing.T, n int, env ...string) *scaleOut {
	t.Helper()
	state := pgtest.URL(t)
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	require.NoError(t, err)
	t.Cleanup(kafka.Close)
	t.Setenv("SLUICE_BROKER", "kafka://"+strings.Join(kafka.ListenAddrs(), ",")+"?max_wait=20ms&partitions=2")
	t.Setenv("SLUICE_STATE", state)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	flow, err := filepath.Abs("orders")
	require.NoError(t, err)
	s := &scaleOut{t: t, flow: flow}
	for range n {
		s.procs = append(s.procs, run(t, t.TempDir(), flow))
	}
	return s
}

// kill SIGKILLs process i; restart starts it again in its folder.
func (s *scaleOut) kill(i int) {
	require.NoError(s.t, s.procs[i].cmd.Process.Kill())
	_ = s.procs[i].cmd.Wait()
}

func (s *scaleOut) restart(i int) { startAt(s.t, s.procs[i], s.flow) }

// publish publishes events as `sluice publish --ndjson` does, keyed by order.
func (s *scaleOut) publish(events []orderEvent) {
	s.t.Helper()
	var lines []string
	for _, e := range events {
		b, _ := json.Marshal(e)
		lines = append(lines, string(b))
	}
	dir := s.t.TempDir()
	require.NoError(s.t, os.WriteFile(filepath.Join(dir, "events.ndjson"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	cli(s.t, dir, "publish", "--ndjson", "--id-field", "msg_id", "--key-field", "order_id", "orders", "@events.ndjson")
}

type runRecord struct {
	ID, Input, Status, Error string
}

// runs lists the orders flow's runs, as `sluice runs` from process i's
// folder shows them.
func (s *scaleOut) runs(i int) []runRecord {
	var out []runRecord
	for _, line := range strings.Split(strings.TrimSpace(cli(s.t, s.procs[i].dir, "runs", "--flow", "orders", "--json", "--limit", "10000")), "\n") {
		var r runRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.ID != "" {
			out = append(out, r)
		}
	}
	return out
}

// finished maps each input with a final run (succeeded or dead-lettered)
// to its statuses.
func finished(runs []runRecord) map[string][]string {
	out := map[string][]string{}
	for _, r := range runs {
		if r.Status == "succeeded" || r.Status == "dead_lettered" {
			out[r.Input] = append(out[r.Input], r.Status)
		}
	}
	return out
}

type entity struct {
	State   string `json:"state"`
	Version int    `json:"version"`
	History []struct {
		From, To, Event, Input string
	} `json:"history"`
}

func (s *scaleOut) entity(i int, order string) entity {
	var e entity
	require.NoError(s.t, json.Unmarshal([]byte(cli(s.t, s.procs[i].dir, "state", "get", "order", order, "--json")), &e), order)
	return e
}

// String is what a failed wait prints: each process's log tail and the
// runs recorded so far, read when the message is formatted (at the
// failure), not when the wait began.
func (s *scaleOut) String() string {
	var b strings.Builder
	for i, p := range s.procs {
		fmt.Fprintf(&b, "--- process %d:\n%s\n", i, tail(p.log.String(), 6000))
	}
	counts := map[string]int{}
	for _, r := range s.runs(len(s.procs) - 1) {
		kind := "event"
		if strings.HasPrefix(r.Input, "timer:") {
			kind = "timer"
		}
		counts[kind+" "+r.Status]++
	}
	fmt.Fprintf(&b, "--- runs by input kind and status: %v\n", counts)
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// TestOrdersScaleOut: three `sluice run` processes share the orders
// example on one Kafka and one PostgreSQL state database. The stream of
// TestOrders is published in three parts: after the first, process 0 is
// SIGKILLed (and later restarted); after the second, process 1 is stopped.
// Every order ends in the state and history one process gives, the events
// dead-lettered are exactly those one process refuses, and `sluice runs`,
// `dlq list` and `usage` from any process's folder show all of the work.
func TestOrdersScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("three sluice processes on Kafka and PostgreSQL")
	}
	s := newScaleOut(t, 3)
	events, want, refused := orderStream()
	inputs := map[string]bool{}
	for _, e := range events {
		inputs[e.MsgID] = true
	}
	third := len(events) / 3
	s.publish(events[:third])
	require.Eventually(t, func() bool { return len(finished(s.runs(2))) >= third/2 }, 60*time.Second, 100*time.Millisecond,
		"no progress:\n%s", s)
	s.kill(0)
	s.publish(events[third : 2*third])
	s.restart(0)
	s.procs[1].stop()
	s.publish(events[2*third:])

	require.Eventually(t, func() bool { return len(finished(s.runs(2))) == len(inputs) }, 120*time.Second, 200*time.Millisecond,
		"not every input finished:\n%s", s)
	for i := range s.procs {
		runs := s.runs(i)
		fin := finished(runs)
		assert.Len(t, fin, len(inputs), "process %d's view", i)
		for in, st := range fin {
			assert.Len(t, st, 1, "input %s finished once: %v", in, st)
		}
	}

	for order, states := range want {
		e := s.entity(2, order)
		assert.Equal(t, states[len(states)-1], e.State, order)
		var path []string
		for _, h := range e.History {
			path = append(path, h.To)
		}
		assert.Equal(t, states, path, order)
	}

	reasons := map[string]bool{}
	sources := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(cli(t, s.procs[1].dir, "dlq", "list", "--flow", "orders", "--json")), "\n") {
		var dl struct {
			Error    string `json:"error"`
			SourceID string `json:"source_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &dl))
		reasons[dl.Error] = true
		sources[dl.SourceID] = true
	}
	var wantReasons []string
	for _, r := range refused {
		wantReasons = append(wantReasons, r)
	}
	var gotReasons []string
	for r := range reasons {
		gotReasons = append(gotReasons, r)
	}
	sort.Strings(wantReasons)
	sort.Strings(gotReasons)
	assert.Equal(t, wantReasons, gotReasons, "dead-lettered: what one process refuses, nothing else")
	assert.Len(t, sources, len(refused))

	var usage []struct {
		Calls  int64 `json:"calls"`
		Errors int64 `json:"errors"`
	}
	for _, line := range strings.Split(strings.TrimSpace(cli(t, s.procs[0].dir, "usage", "--flow", "orders", "--json")), "\n") {
		var u struct {
			Calls  int64 `json:"calls"`
			Errors int64 `json:"errors"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &u))
		usage = append(usage, u)
	}
	var calls, errs int64
	for _, u := range usage {
		calls, errs = calls+u.Calls, errs+u.Errors
	}
	assert.GreaterOrEqual(t, calls, int64(len(inputs)), "usage counts every input's run")
	assert.Equal(t, int64(len(refused)), errs)
}

// TestOrderTimersScaleOut: with three processes, unpaid orders are
// cancelled by their timers once each, though one process is SIGKILLed
// and restarted, and another stopped, while the timers are pending;
// paid orders are left alone. The processes change only once every order
// event has run: a pay redelivered after a failover may rightly come later
// than its order's timer (which then cancels the order), so the failover
// waits for the events, never the other way round.
func TestOrderTimersScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("three sluice processes on Kafka and PostgreSQL")
	}
	s := newScaleOut(t, 3, "UNPAID_AFTER=10s")
	var events []orderEvent
	const n = 30
	for i := 1; i <= n; i++ {
		o := fmt.Sprintf("t-%02d", i)
		events = append(events, orderEvent{MsgID: "c-" + o, OrderID: o, Type: "create"})
		if i%2 == 0 {
			events = append(events, orderEvent{MsgID: "p-" + o, OrderID: o, Type: "pay", Amount: 10})
		}
	}
	s.publish(events)
	require.Eventually(t, func() bool {
		n := 0
		for in := range finished(s.runs(2)) {
			if !strings.HasPrefix(in, "timer:") {
				n++
			}
		}
		return n == len(events)
	}, 60*time.Second, 100*time.Millisecond, "the order events did not all run:\n%s", s)
	s.kill(0)
	s.procs[1].stop()
	s.restart(0)

	timerRuns := func(runs []runRecord) (final, dups map[string]int) {
		final, dups = map[string]int{}, map[string]int{}
		for _, r := range runs {
			if !strings.HasPrefix(r.Input, "timer:") {
				continue
			}
			switch r.Status {
			case "succeeded", "dead_lettered":
				final[r.Input]++
			default:
				dups[r.Input]++
			}
		}
		return final, dups
	}
	require.Eventually(t, func() bool {
		final, _ := timerRuns(s.runs(2))
		return len(final) == n/2
	}, 90*time.Second, 250*time.Millisecond, "timers did not fire:\n%s", s)

	final, dups := timerRuns(s.runs(0))
	for in, c := range final {
		assert.Equal(t, 1, c, in)
	}
	assert.Empty(t, dups, "each timer is published once")
	for i := 1; i <= n; i++ {
		o := fmt.Sprintf("t-%02d", i)
		e := s.entity(0, o)
		if i%2 == 0 {
			assert.Equal(t, "paid", e.State, o)
			continue
		}
		require.Len(t, e.History, 2, o)
		assert.Equal(t, "cancelled", e.State, o)
		assert.Equal(t, "expire", e.History[1].Event, o)
		assert.Equal(t, "timer:order:"+o+":1:expire", e.History[1].Input, o)
	}
}

// TestSecondRunOnOneQueueRefused: the embedded queue serves one process:
// a second `sluice run` on the same queue file stops at once, saying why.
func TestSecondRunOnOneQueueRefused(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SLUICE_BROKER", "")
	t.Setenv("SLUICE_STATE", "")
	flow, err := filepath.Abs("orders")
	require.NoError(t, err)
	run(t, dir, flow)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin, "run", "--listen", freeAddr(t), flow)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	require.Error(t, err, "a second process must not consume the same queue:\n%s", out.String())
	assert.NoError(t, ctx.Err(), "it must stop at once, not run")
	// The home's in-flight record is locked first; on another home the
	// queue's consumer lock says "another sluice process is consuming
	// this queue" (brokers/sqlite_lock_test.go).
	assert.Contains(t, out.String(), "another sluice")
}

// TestThumbnailsScaleOutOnPostgres: two `sluice run` processes share the
// thumbnails example on MinIO + Kafka + PostgreSQL. MinIO's webhook posts
// to the first; both list the bucket every second, so both bridges meet
// every upload: the seen-index and the completion ledger they share in
// PostgreSQL make it one succeeded run per object, visible from either.
func TestThumbnailsScaleOutOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO and two sluice processes")
	}
	stateURL := pgtest.URL(t)
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer kafka.Close()
	addrA, addrB := freeAddr(t), freeAddr(t)
	srv := miniotest.Start(t,
		"MINIO_NOTIFY_WEBHOOK_ENABLE_SLUICE=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_SLUICE=http://"+addrA+"/hooks/s3",
		"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_SLUICE="+t.TempDir(),
	)
	base := srv.URL() + "&notify_arn=arn:minio:sqs::SLUICE:webhook"
	t.Setenv("SLUICE_BROKER", "kafka://"+strings.Join(kafka.ListenAddrs(), ",")+"?max_wait=20ms&partitions=4")
	t.Setenv("SLUICE_STATE", stateURL)
	t.Setenv("SLUICE_STORAGE", base+"&reconcile=1s")
	flow, err := filepath.Abs("thumbnails")
	require.NoError(t, err)
	a := &instance{t: t, dir: t.TempDir(), addr: addrA}
	startAt(t, a, flow)
	b := &instance{t: t, dir: t.TempDir(), addr: addrB}
	startAt(t, b, flow)

	store, err := storage.Open(context.Background(), base)
	require.NoError(t, err)
	var jpg bytes.Buffer
	photoBytes(t, &jpg, 320, 240)
	const n = 40
	for i := range n {
		_, err := store.PutBytes(context.Background(), "uploads", fmt.Sprintf("p-%03d.jpg", i), jpg.Bytes(), storage.PutOptions{})
		require.NoError(t, err)
	}
	succeeded := func(dir string) map[string]int {
		out := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "runs", "--flow", "thumbnails", "--json", "--limit", "1000")), "\n") {
			var r runRecord
			if json.Unmarshal([]byte(line), &r) == nil && r.Status == "succeeded" {
				out[r.Input]++
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(succeeded(b.dir)) == n }, 90*time.Second, 250*time.Millisecond,
		"not every upload ran:\n%v\n%v", lazy(func() string { return tail(a.log.String(), 3000) }), lazy(func() string { return tail(b.log.String(), 3000) }))
	for i := range n {
		_, err := store.Stat(context.Background(), "thumbnails", fmt.Sprintf("p-%03d.jpg", i))
		require.NoError(t, err)
	}
	for _, dir := range []string{a.dir, b.dir} {
		for in, c := range succeeded(dir) {
			assert.Equal(t, 1, c, "%s ran once", in)
		}
	}
}

// TestOrderTimerEmbedded: on the embedded default (SQLite queue and
// state), an order left unpaid is cancelled by its timer; after a restart
// nothing fires again.
func TestOrderTimerEmbedded(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SLUICE_BROKER", "")
	t.Setenv("SLUICE_STATE", "")
	t.Setenv("UNPAID_AFTER", "1s")
	flow, err := filepath.Abs("orders")
	require.NoError(t, err)
	in := run(t, dir, flow)
	cli(t, dir, "publish", "orders", `{"order_id": "o-1", "type": "create"}`)
	cli(t, dir, "publish", "orders", `{"order_id": "o-2", "type": "create"}`)
	cli(t, dir, "publish", "orders", `{"order_id": "o-2", "type": "pay", "amount": 5}`)
	get := func(order string) entity {
		var e entity
		require.NoError(t, json.Unmarshal([]byte(cli(t, dir, "state", "get", "order", order, "--json")), &e))
		return e
	}
	require.Eventually(t, func() bool {
		cmd := exec.Command(sluiceBin, "state", "get", "order", "o-1", "--json")
		cmd.Dir = dir
		out, err := cmd.Output()
		var e entity
		return err == nil && json.Unmarshal(out, &e) == nil && e.State == "cancelled"
	}, 30*time.Second, 100*time.Millisecond, "o-1 was not cancelled:\n%s", in.log)
	in.stop()
	startAt(t, in, flow)
	e := get("o-1")
	require.Len(t, e.History, 2)
	assert.Equal(t, "expire", e.History[1].Event)
	assert.Equal(t, "paid", get("o-2").State)
	out := cli(t, dir, "state", "get", "order", "o-1")
	assert.Regexp(t, `(?m)^1\s+created\s+expire\s+\S+ \S+\s+fired$`, out)
	runs := cli(t, dir, "runs", "--flow", "orders", "--json")
	assert.Equal(t, 1, strings.Count(runs, `"input":"timer:order:o-1:1:expire"`), runs)
}
