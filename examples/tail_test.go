package examples_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

const tailRelayFlow = `
name: relay
on: {topic: in}
steps:
  - node: transform
    with: {payload: '{"n": payload.n, "doubled": payload.n * 2}'}
  - node: publish
    with: {topic: out, metadata: {stage: relayed}}
`

type tailed struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    *int64            `json:"offset"`
	Time      time.Time         `json:"time"`
	ID        string            `json:"id"`
	Metadata  map[string]string `json:"metadata"`
	Payload   json.RawMessage   `json:"payload"`
}

func parseTailed(t *testing.T, out string) []tailed {
	t.Helper()
	var recs []tailed
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r tailed
		require.NoError(t, json.Unmarshal([]byte(line), &r), "line %q", line)
		recs = append(recs, r)
	}
	return recs
}

// TestTailAndTopics drives `sluice tail` and `sluice topics` beside a
// running flow on the embedded queue and on Kafka: counts and lags,
// messages with metadata from the beginning and as they arrive, and the
// flow's consumer group left alone.
func TestTailAndTopics(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { tailScenario(t, "") })
	t.Run("kafka", func(t *testing.T) {
		if testing.Short() {
			t.Skip("Kafka consumer groups take seconds to settle")
		}
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(2))
		require.NoError(t, err)
		defer c.Close()
		tailScenario(t, "kafka://"+strings.Join(c.ListenAddrs(), ",")+"?max_wait=20ms&partitions=2")
	})
	t.Run("mem", func(t *testing.T) {
		dir := t.TempDir()
		for _, args := range [][]string{{"tail", "x"}, {"topics"}} {
			cmd := exec.Command(sluiceBin, args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "SLUICE_BROKER=mem://")
			out, err := cmd.CombinedOutput()
			require.Error(t, err)
			assert.Contains(t, string(out), "mem:// topics live inside the process that runs the flows")
		}
	})
}

func tailScenario(t *testing.T, brokerURL string) {
	dir := t.TempDir()
	if brokerURL != "" {
		t.Setenv("SLUICE_BROKER", brokerURL)
	}
	assert.Equal(t, "no topics: no queue at .sluice/queue.db yet\n", cliOnSQLite(t, dir, brokerURL))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(tailRelayFlow), 0o644))

	// A follower started before anything exists waits for the topic.
	follow := exec.Command(sluiceBin, "tail", "--json", "-n", "3", "out")
	follow.Dir = dir
	stdout, err := follow.StdoutPipe()
	require.NoError(t, err)
	follow.Stderr = os.Stderr
	require.NoError(t, follow.Start())
	t.Cleanup(func() { _ = follow.Process.Kill(); _ = follow.Wait() })
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	in := run(t, dir, "relay.yaml")
	// The follower starts in its own time: publish until it has printed
	// three messages (it may miss the first ones, never print an old one).
	var followed []tailed
	i := 0
	require.Eventually(t, func() bool {
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					return true
				}
				followed = append(followed, parseTailed(t, line)...)
				continue
			default:
			}
			break
		}
		if len(followed) < 3 {
			i++
			cli(t, dir, "publish", "--meta", "source=test", "--id", fmt.Sprintf("in-%d", i), "in", fmt.Sprintf(`{"n": %d}`, i))
		}
		return len(followed) >= 3
	}, 60*time.Second, 200*time.Millisecond, "the follower printed %d messages; flow log:\n%s", len(followed), in.log)
	require.NoError(t, follow.Wait(), "tail -n 3 exits by itself")
	require.Len(t, followed, 3, "log:\n%s", in.log)
	seen := map[string]bool{}
	for _, r := range followed {
		assert.Equal(t, "out", r.Topic)
		assert.Equal(t, "relayed", r.Metadata["stage"])
		assert.Equal(t, "test", r.Metadata["source"], "input metadata carried over")
		var p struct{ N, Doubled int }
		require.NoError(t, json.Unmarshal(r.Payload, &p))
		assert.Equal(t, 2*p.N, p.Doubled)
		seen[string(r.Payload)] = true
		require.NotNil(t, r.Offset)
	}
	assert.Len(t, seen, 3)

	// The input topic, from the beginning, while the flow consumes it: the
	// tail sees all three; the flow's group finishes with no lag.
	recs := parseTailed(t, cli(t, dir, "tail", "--from-beginning", "-n", fmt.Sprint(i), "--json", "in"))
	ids := map[string]bool{}
	for _, r := range recs {
		ids[r.ID] = true
		assert.Equal(t, "test", r.Metadata["source"])
	}
	require.Len(t, ids, i)
	for k := 1; k <= i; k++ {
		assert.True(t, ids[fmt.Sprintf("in-%d", k)], "in-%d", k)
	}
	text := cli(t, dir, "tail", "--from-beginning", "-n", "1", "in")
	assert.Regexp(t, `^in(/\d+)? #\d+ \d{4}-\d\d-\d\dT\S+ id=in-\d source=test\n\{"n": \d\}\n$`, text)

	var topics map[string]map[string]any
	require.Eventually(t, func() bool {
		topics = map[string]map[string]any{}
		for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "topics", "--json")), "\n") {
			var ti map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &ti))
			topics[ti["topic"].(string)] = ti
		}
		g, _ := topics["in"]["groups"].([]any)
		return len(g) == 1 && g[0].(map[string]any)["lag"] == 0.0
	}, 30*time.Second, 100*time.Millisecond, "topics: %v", &topics)
	assert.Equal(t, float64(i), topics["in"]["messages"])
	assert.Equal(t, "relay", topics["in"]["groups"].([]any)[0].(map[string]any)["group"])
	assert.Equal(t, float64(i), topics["out"]["messages"])
	assert.Nil(t, topics["out"]["groups"], "tailing made no consumer group")
	table := cli(t, dir, "topics")
	assert.Regexp(t, `(?m)^TOPIC\s+MESSAGES\s+GROUP\s+LAG$`, table)
	assert.Regexp(t, fmt.Sprintf(`(?m)^in\s+%d\s+relay\s+0$`, i), table)
	assert.Regexp(t, fmt.Sprintf(`(?m)^out\s+%d\s+-\s+-$`, i), table)

	// A new message still reaches the flow (its group was not disturbed).
	cli(t, dir, "publish", "in", `{"n": 10}`)
	recs = parseTailed(t, cli(t, dir, "tail", "--from-beginning", "-n", fmt.Sprint(i+1), "--json", "out"))
	found := false
	for _, r := range recs {
		found = found || strings.Contains(string(r.Payload), `"doubled":20`)
	}
	assert.True(t, found, "%v", recs)
}

// cliOnSQLite runs `sluice topics` on a fresh home for the embedded
// queue; on other brokers it answers as the test expects.
func cliOnSQLite(t *testing.T, dir, brokerURL string) string {
	if brokerURL != "" {
		return "no topics: no queue at .sluice/queue.db yet\n"
	}
	out := cli(t, dir, "topics")
	_, err := os.Stat(filepath.Join(dir, ".sluice", "queue.db"))
	assert.True(t, os.IsNotExist(err), "topics creates no queue")
	return out
}
