package examples_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reloadFlow relays topic "in" to "out", marking each output with the
// definition that ran it.
const reloadFlow = `name: relay
on: {topic: in}
steps:
  - node: %s
    with: {payload: '{"n": payload.n, "version": "%s"}'}
  - node: publish
    with: {topic: out}
`

// saveFlow writes a flow file the way editors save: a new file renamed
// over the old one.
func saveFlow(t *testing.T, path, node, version string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".~"+filepath.Base(path)+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(fmt.Sprintf(reloadFlow, node, version)), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

// publisher runs `sluice publish` without pause until stopped; each
// message's id is m-<n>.
type publisher struct {
	stop chan struct{}
	done chan struct{}
	n    atomic.Int64
}

func startPublisher(t *testing.T, dir string) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			cmd := exec.Command(sluiceBin, "publish", "--id", fmt.Sprintf("m-%05d", i), "in", fmt.Sprintf(`{"n": %d}`, i))
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("sluice publish: %v\n%s", err, out)
				return
			}
			p.n.Add(1)
		}
	}()
	return p
}

func (p *publisher) halt() int {
	close(p.stop)
	<-p.done
	return int(p.n.Load())
}

// relayOutputs reads the first n messages of "out": version by id.
func relayOutputs(t *testing.T, dir string, n int) (ids []string, versions []string) {
	t.Helper()
	out := cli(t, dir, "tail", "--from-beginning", "--json", "-n", fmt.Sprint(n), "out")
	for _, rec := range parseTailed(t, out) {
		var p struct{ Version string }
		require.NoError(t, json.Unmarshal(rec.Payload, &p))
		ids, versions = append(ids, rec.ID), append(versions, p.Version)
	}
	return ids, versions
}

// succeeded counts the relay's succeeded runs.
func succeeded(t *testing.T, dir string) int {
	t.Helper()
	out := cli(t, dir, "runs", "--flow", "relay", "--status", "succeeded", "--json", "--limit", "1000000")
	return strings.Count(out, "\n")
}

func readyz(t *testing.T, in *instance) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + in.addr + "/readyz")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestHotReload edits a running flow's file while messages flow: with
// --watch the saved change is picked up, later messages run on the new
// definition, an invalid edit is logged with its position and shown on
// /readyz while the old definition keeps running; without --watch SIGHUP
// does the same. Every message is run and published exactly once.
func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "flows"), 0o755))
	file := filepath.Join(dir, "flows", "relay.yaml")
	saveFlow(t, file, "transform", "v1")
	in := run(t, dir, "--watch", "flows")
	pub := startPublisher(t, dir)
	defer func() {
		select {
		case <-pub.done:
		default:
			pub.halt()
		}
	}()

	// waitVersion waits until the relay's latest outputs come from version.
	waitVersion := func(in *instance, version string) {
		t.Helper()
		require.Eventually(t, func() bool {
			n := succeeded(t, dir)
			if n == 0 {
				return false
			}
			_, vs := relayOutputs(t, dir, n)
			return vs[len(vs)-1] == version
		}, 30*time.Second, 50*time.Millisecond, "no %s output:\n%s", version, in.log)
	}
	waitVersion(in, "v1")

	saveFlow(t, file, "transform", "v2")
	waitVersion(in, "v2")
	assert.Contains(t, in.log.String(), `msg="flow files reloaded" trigger=watch added=0 changed=1 removed=0 unchanged=0 changed_flows=relay`)

	// An invalid edit: logged at its position, shown on /readyz; v2 keeps
	// running.
	saveFlow(t, file, "transfrom", "v3")
	problem := `flows/relay.yaml:4:11: steps[0]: unknown node type \"transfrom\"`
	require.Eventually(t, func() bool { return strings.Contains(in.log.String(), problem) }, 20*time.Second, 20*time.Millisecond, "%s", in.log)
	code, body := readyz(t, in)
	assert.Equal(t, http.StatusOK, code, "the running flows are fine")
	assert.Contains(t, body, "(watch): invalid; the running flows are kept")
	assert.Contains(t, body, strings.ReplaceAll(problem, `\"`, `"`))
	before := succeeded(t, dir)
	require.Eventually(t, func() bool { return succeeded(t, dir) >= before+5 }, 30*time.Second, 50*time.Millisecond)
	_, vs := relayOutputs(t, dir, succeeded(t, dir))
	assert.Equal(t, "v2", vs[len(vs)-1], "the old definition keeps running")

	// The fix, back to v2, is the running definition: nothing changes.
	saveFlow(t, file, "transform", "v2")
	require.Eventually(t, func() bool {
		_, body := readyz(t, in)
		return strings.Contains(body, "(watch): unchanged")
	}, 20*time.Second, 20*time.Millisecond, "%s", in.log)

	// A second file defining the same flow is refused; removing it
	// leaves the running flow as it was.
	dup := filepath.Join(dir, "flows", "copy.yaml")
	saveFlow(t, dup, "transform", "v9")
	require.Eventually(t, func() bool {
		_, body := readyz(t, in)
		return strings.Contains(body, `flows/relay.yaml:1:7: flow name "relay" is already used by flows/copy.yaml:1:7`)
	}, 20*time.Second, 20*time.Millisecond, "%s", in.log)
	require.NoError(t, os.Remove(dup))
	require.Eventually(t, func() bool {
		_, body := readyz(t, in)
		return strings.Contains(body, "(watch): unchanged")
	}, 20*time.Second, 20*time.Millisecond, "%s", in.log)

	resp, err := http.Get("http://" + in.addr + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(metrics), `sluice_reloads_total{result="applied"} 1`+"\n")
	assert.Regexp(t, `sluice_reloads_total\{result="invalid"\} [1-9]`, string(metrics))
	assert.Regexp(t, `sluice_reloads_total\{result="unchanged"\} [1-9]`, string(metrics))

	// Without --watch: SIGHUP reloads (messages published meanwhile wait
	// in the queue).
	in.stop()
	in = &instance{t: t, dir: dir, addr: freeAddr(t)}
	startAt(t, in, "flows")
	saveFlow(t, file, "transform", "v4")
	require.NoError(t, in.cmd.Process.Signal(syscall.SIGHUP))
	waitVersion(in, "v4")
	assert.Contains(t, in.log.String(), `msg="flow files reloaded" trigger=SIGHUP`)
	saveFlow(t, file, "transfrom", "v5")
	require.NoError(t, in.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, body := readyz(t, in)
		return strings.Contains(body, "(SIGHUP): invalid; the running flows are kept")
	}, 20*time.Second, 20*time.Millisecond, "%s", in.log)
	assert.Contains(t, in.log.String(), problem)

	// Every message ran once, succeeded, and was published once.
	n := pub.halt()
	require.Eventually(t, func() bool { return succeeded(t, dir) >= n }, 60*time.Second, 100*time.Millisecond, "%s", in.log)
	var runs []struct{ Input, Status string }
	for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "runs", "--flow", "relay", "--json", "--limit", "1000000")), "\n") {
		var r struct{ Input, Status string }
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		runs = append(runs, r)
	}
	ok := map[string]int{}
	for _, r := range runs {
		if r.Status == "succeeded" {
			ok[r.Input]++
		} else {
			assert.Equal(t, "duplicate", r.Status, "run of %s", r.Input)
		}
	}
	assert.Len(t, ok, n, "every message has a succeeded run")
	for input, c := range ok {
		assert.Equal(t, 1, c, "%s succeeded %d times", input, c)
	}
	ids, vs := relayOutputs(t, dir, n)
	seen := map[string]bool{}
	for _, id := range ids {
		assert.False(t, seen[id], "output %s published twice", id)
		seen[id] = true
	}
	var topics []struct {
		Topic    string
		Messages int
	}
	for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "topics", "--json")), "\n") {
		var tp struct {
			Topic    string
			Messages int
		}
		require.NoError(t, json.Unmarshal([]byte(line), &tp))
		topics = append(topics, tp)
	}
	for _, tp := range topics {
		if tp.Topic == "out" {
			assert.Equal(t, n, tp.Messages, "one output per message")
		}
	}
	count := map[string]int{}
	for _, v := range vs {
		count[v]++
	}
	t.Logf("%d messages; outputs by version: %v", n, count)
	for _, v := range []string{"v1", "v2", "v4"} {
		assert.Positive(t, count[v], "outputs of %s: %v", v, count)
	}
	assert.Zero(t, count["v3"]+count["v5"]+count["v9"], "invalid edits never ran")
}
