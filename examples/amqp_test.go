package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/storage"
)

// amqpBroker is the RabbitMQ scripts/services/rabbitmq.sh started; tests
// skip without one, and fail under CI=true.
func amqpBroker(t *testing.T) string {
	u := os.Getenv("SLUICE_TEST_AMQP")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("SLUICE_TEST_AMQP is not set: scripts/test.sh starts RabbitMQ (scripts/services/rabbitmq.sh)")
		}
		t.Skip("no RabbitMQ: eval \"$(scripts/services/rabbitmq.sh start)\" sets SLUICE_TEST_AMQP")
	}
	return u
}

// The RabbitMQ outlives a test run: every run uses topics of its own.
const amqpRelayFlow = `
name: relay
on: {topic: "${IN}"}
concurrency: 4
retry: {max_attempts: 1}
steps:
  - node: transform
    with: {payload: '{"n": payload.n, "doubled": payload.n * 2}'}
  - node: publish
    with: {topic: "${OUT}", metadata: {stage: relayed}}
`

// TestAMQPRelay runs a flow on RabbitMQ through the binary: four competing
// consumers of the flow's queue, a bad message dead-lettered, the output
// followed with `sluice tail`, and the commands RabbitMQ cannot serve
// saying why.
func TestAMQPRelay(t *testing.T) {
	url := amqpBroker(t)
	dir := t.TempDir()
	suffix := watermill.NewShortUUID()
	in, out := "in-"+suffix, "out-"+suffix
	t.Setenv("SLUICE_BROKER", url)
	t.Setenv("IN", in)
	t.Setenv("OUT", out)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(amqpRelayFlow), 0o644))
	inst := run(t, dir, "relay.yaml")

	follow := exec.Command(sluiceBin, "tail", "--json", out)
	follow.Dir = dir
	stdout, err := follow.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, follow.Start())
	t.Cleanup(func() { _ = follow.Process.Kill(); _ = follow.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The follower binds its queue in its own time: publish until it sees one.
	n := 0
	require.Eventually(t, func() bool {
		n++
		cli(t, dir, "publish", "--meta", "source=test", in, fmt.Sprintf(`{"n": %d}`, n))
		select {
		case line := <-lines:
			r := parseTailed(t, line)[0]
			assert.Equal(t, "relayed", r.Metadata["stage"])
			assert.Equal(t, "test", r.Metadata["source"])
			assert.Nil(t, r.Offset, "RabbitMQ has no offsets")
			assert.WithinDuration(t, time.Now(), r.Time, time.Minute)
			return true
		default:
			return false
		}
	}, 30*time.Second, 200*time.Millisecond, "the tail saw nothing; log:\n%s", inst.log)

	// A batch through the four consumers, and one bad message.
	var nd bytes.Buffer
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&nd, `{"n": %d}`+"\n", 1000+i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "batch.ndjson"), nd.Bytes(), 0o644))
	cli(t, dir, "publish", "--ndjson", in, "@batch.ndjson")
	cli(t, dir, "publish", in, `{"n": "not a number"}`)
	count := func(status string) int {
		return strings.Count(cli(t, dir, "runs", "--flow", "relay", "--status", status, "--json", "--limit", "1000"), "\n")
	}
	require.Eventually(t, func() bool { return count("succeeded") == n+40 && count("dead_lettered") == 1 },
		30*time.Second, 100*time.Millisecond, "log:\n%s", inst.log)

	cmd := exec.Command(sluiceBin, "topics")
	cmd.Dir = dir
	o, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(o), "amqp:// cannot list topics")
	cmd = exec.Command(sluiceBin, "tail", "--from-beginning", out)
	cmd.Dir = dir
	o, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(o), "amqp:// keeps no history")
}

// TestLogArchiveOnAMQP archives log lines from RabbitMQ (a stream with
// manual acks within the prefetch window, committed with multiple acks) and
// kills sluice once midway: every line is archived exactly once, because
// the uncommitted messages come back in order and the rewritten batch has
// the same key (its first message's publish time).
func TestLogArchiveOnAMQP(t *testing.T) {
	url := amqpBroker(t)
	const total = 6000
	dir := t.TempDir()
	topic := "logs-" + watermill.NewShortUUID()
	t.Setenv("SLUICE_BROKER", url+"?stream_prefetch=1000")
	flow := strings.ReplaceAll(mustRead(t, "log-archive/flow.yaml"), "topic: logs", "topic: "+topic)
	flow = strings.ReplaceAll(flow, "max_count: 10000", "max_count: 500")
	flow = strings.ReplaceAll(flow, "topic: alerts", "topic: alerts-"+topic)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "archive.yaml"), []byte(flow), 0o644))
	t.Setenv("ARCHIVE_MAX_WAIT", "1s")
	in := run(t, dir, "archive.yaml") // declares the flow's queue: what follows is kept

	var buf bytes.Buffer
	start := time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
	for i := 0; i < total; i++ {
		fmt.Fprintf(&buf, `{"n":%d,"ts":%q,"level":"info","msg":"line %d"}`+"\n", i, start.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "logs.ndjson"), buf.Bytes(), 0o644))
	published := make(chan string, 1)
	go func() {
		cmd := exec.Command(sluiceBin, "publish", "--ndjson", topic, "@logs.ndjson")
		cmd.Dir = dir
		o, _ := cmd.CombinedOutput()
		published <- string(o)
	}()
	store, err := storage.Open(context.Background(), "fs://"+filepath.Join(dir, ".sluice", "buckets"))
	require.NoError(t, err)
	objects := func() int {
		k := 0
		_ = store.List(context.Background(), "archive", "", func(storage.ObjectInfo) error { k++; return nil })
		return k
	}
	require.Eventually(t, func() bool { return objects() >= 2 }, 60*time.Second, 5*time.Millisecond, "no objects:\n%s", in.log)
	require.NoError(t, in.cmd.Process.Kill())
	_ = in.cmd.Wait()
	_, atKill := archivedLines(t, store)
	require.Less(t, atKill, total, "the kill came after everything was archived")
	startAt(t, in, "archive.yaml")
	assert.Contains(t, <-published, fmt.Sprintf("published %d messages", total))
	var lines map[int]int
	got := 0
	require.Eventually(t, func() bool { lines, got = archivedLines(t, store); return got >= total },
		120*time.Second, 100*time.Millisecond, "archived %d lines:\n%s", &got, in.log)
	in.stop()
	lines, got = archivedLines(t, store)
	assert.Equal(t, total, got, "no line archived twice")
	assert.Len(t, lines, total, "no line lost")
}

func mustRead(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
