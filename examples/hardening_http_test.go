package examples_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowBody opens a connection and sends a request whose body trickles in
// a byte at a time, until the server closes the connection; it returns
// when that happens.
func slowBody(t *testing.T, addr, path string) <-chan struct{} {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", path)
	require.NoError(t, err)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		defer c.Close()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if _, err := c.Write([]byte(" ")); err != nil {
				return // the server closed it
			}
		}
	}()
	return closed
}

// Slow clients hold neither a route nor the process: bodies have a read
// deadline, and shutdown cuts off what is still sending.
func TestSlowClientsCannotHoldTheListener(t *testing.T) {
	dir := t.TempDir()
	flow := writeFlow(t, dir, "echo.yaml", `
name: echo
on:
  http: {path: /echo, max_concurrent: 2}
steps:
  - node: transform
    with: {set: {ok: 'true'}}
`)
	in := run(t, dir, "--read-timeout", "2s", "--drain-timeout", "1s", flow)
	a, b := slowBody(t, in.addr, "/echo"), slowBody(t, in.addr, "/echo")
	// Both slow clients are cut off at the read timeout; the route serves
	// others again.
	for _, c := range []<-chan struct{}{a, b} {
		select {
		case <-c:
		case <-time.After(15 * time.Second):
			t.Fatal("a client sending a byte every 200ms kept its connection past the read timeout")
		}
	}
	require.Eventually(t, func() bool {
		resp, err := http.Post("http://"+in.addr+"/echo", "application/json", strings.NewReader(`{}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 50*time.Millisecond)

	// A slow client at shutdown: the process still exits soon after the drain.
	slowBody(t, in.addr, "/echo")
	start := time.Now()
	require.NoError(t, in.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("sluice run still running 15s after SIGTERM with a slow client:\n%s", in.log)
	}
	assert.Less(t, time.Since(start), 10*time.Second)
}

// Idle keep-alive connections are closed after the idle timeout, and the
// connection limit makes extra ones wait instead of exhausting the
// process's file descriptors.
func TestIdleConnectionsAreBounded(t *testing.T) {
	dir := t.TempDir()
	flow := writeFlow(t, dir, "ping.yaml", `
name: ping
on:
  http: {path: /ping, methods: [GET]}
steps:
  - node: transform
    with: {set: {pong: 'true'}}
`)
	in := run(t, dir, "--idle-timeout", "1s", "--max-connections", "20", flow)
	var conns []net.Conn
	for range 60 {
		c, err := net.Dial("tcp", in.addr)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Served once the idle ones are closed (the first 20 never send a request:
	// the read-header timeout closes them; the rest wait to be accepted).
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Get("http://" + in.addr + "/ping")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

// The runs API shows a run only to a caller with the route's credentials.
func TestRunsAPINeedsTheRoutesCredentials(t *testing.T) {
	dir := t.TempDir()
	flow := writeFlow(t, dir, "jobs.yaml", `
name: jobs
on:
  http: {path: /jobs, mode: async, api_keys_env: JOBS_KEYS}
steps:
  - node: transform
    with: {set: {done: 'true'}}
`)
	in := &instance{t: t, dir: dir, addr: freeAddr(t)}
	t.Setenv("JOBS_KEYS", "k-123")
	startAt(t, in, flow)
	req, _ := http.NewRequest("POST", "http://"+in.addr+"/jobs", strings.NewReader(`{"n":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", "k-123")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var acc map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&acc))
	resp.Body.Close()
	require.Equal(t, 202, resp.StatusCode)

	get := func(path, key string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+in.addr+path, nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/runs/" + acc["run"], "/runs/" + acc["run"] + "/result"} {
		code, _ := get(path, "")
		assert.Equal(t, 401, code, "%s without a key", path)
		code, _ = get(path, "wrong")
		assert.Equal(t, 401, code, "%s with a wrong key", path)
	}
	require.Eventually(t, func() bool {
		code, body := get("/runs/"+acc["run"]+"/result", "k-123")
		return code == 200 && strings.Contains(body, `"done":true`)
	}, 20*time.Second, 50*time.Millisecond)
	code, _ := get("/runs/01NOSUCHRUN", "k-123")
	assert.Equal(t, 404, code)
}

// Signed requests carry their time: an old one is refused (no replay);
// the bearer scheme is case-insensitive.
func TestSignedRequestsCannotBeReplayedLater(t *testing.T) {
	dir := t.TempDir()
	flow := writeFlow(t, dir, "hook.yaml", `
name: hook
on:
  http: {path: /hook, hmac_secret_env: HOOK_SECRET, hmac_timestamp_header: X-Timestamp, hmac_tolerance: 1m}
steps:
  - node: transform
    with: {set: {ok: 'true'}}
---
name: me
on:
  http: {path: /me, methods: [GET], jwt_secret_env: JWT_SECRET}
steps:
  - node: transform
    with: {payload: '{"sub": request.claims.sub}'}
`)
	t.Setenv("HOOK_SECRET", "s3cret")
	t.Setenv("JWT_SECRET", "jwt-secret")
	in := &instance{t: t, dir: dir, addr: freeAddr(t)}
	startAt(t, in, flow)
	post := func(ts int64) int {
		body := `{"event":"paid"}`
		mac := hmac.New(sha256.New, []byte("s3cret"))
		stamp := strconv.FormatInt(ts, 10)
		mac.Write([]byte(stamp + "." + body))
		req, _ := http.NewRequest("POST", "http://"+in.addr+"/hook", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Timestamp", stamp)
		req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, 200, post(time.Now().Unix()))
	assert.Equal(t, 401, post(time.Now().Add(-10*time.Minute).Unix()), "a request captured 10 minutes ago")

	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ada", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("jwt-secret"))
	require.NoError(t, err)
	req, _ := http.NewRequest("GET", "http://"+in.addr+"/me", nil)
	req.Header.Set("Authorization", "bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "lower-case bearer")
}

// Uploads: a file name the bucket refuses is the client's error (400),
// a request with too many parts is refused, and nothing of a refused or
// failed request stays in the bucket.
func TestUploadsAreBoundedAndCleanedUp(t *testing.T) {
	dir := t.TempDir()
	flow := writeFlow(t, dir, "up.yaml", `
name: up
on:
  http: {path: /up, uploads: incoming}
steps:
  - node: transform
    with: {set: {n: 'payload.fail == "yes" ? 1 / 0 : 1'}}
`)
	in := run(t, dir, flow)
	send := func(files int, name, fail string) int {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("fail", fail)
		for i := range files {
			w, _ := mw.CreateFormFile("file", fmt.Sprintf(name, i))
			_, _ = w.Write([]byte("data"))
		}
		mw.Close()
		resp, err := http.Post("http://"+in.addr+"/up", mw.FormDataContentType(), &buf)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, 400, send(1, ".hidden%d.jpg", "no"))
	assert.Equal(t, 400, send(1, "x%d.part", "no"))
	assert.Equal(t, 400, send(150, "f%d.txt", "no"), "150 parts")
	assert.Equal(t, 422, send(3, "f%d.txt", "yes"), "the flow fails on this request")
	assert.Equal(t, 200, send(2, "ok%d.txt", "no"))
	var stored []string
	_ = filepath.Walk(filepath.Join(dir, ".sluice", "buckets", "incoming"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			stored = append(stored, filepath.Base(p))
		}
		return nil
	})
	assert.ElementsMatch(t, []string{"ok0.txt", "ok1.txt"}, stored, "only the successful request's files stay")
}

// A flow feeding itself through a templated topic is stopped at the hop
// limit and its message dead-lettered with the reason; an alias step runs.
func TestSelfFeedingFlowStopsAtTheHopLimit(t *testing.T) {
	dir := t.TempDir()
	flow := writeFlow(t, dir, "loop.yaml", `
name: loop
on: {topic: events.in}
steps:
  - &note {node: transform, with: {set: {seen: '(payload.seen ?? 0) + 1'}}}
  - node: publish
    with: {topic: 'events.{{ payload.kind }}'}
`)
	in := run(t, dir, flow)
	cli(t, dir, "publish", "events.in", `{"kind": "in"}`)
	require.Eventually(t, func() bool {
		return strings.Contains(cli(t, dir, "dlq", "list"), "loop between flows")
	}, 30*time.Second, 100*time.Millisecond, "the looping message is dead-lettered:\n%s", in.log)
	out := cli(t, dir, "runs", "--flow", "loop", "--status", "succeeded", "--limit", "1000", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Len(t, lines, 32, "32 hops ran: one run record (a JSON line) each")
}

// The flow file of a loop is valid; validate is fast on huge files.
func TestValidateIsLinearInSteps(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("name: big\non: {topic: in}\nsteps:\n")
	for range 20000 {
		b.WriteString("  - node: log\n    with: {message: hi}\n")
	}
	flow := writeFlow(t, dir, "big.yaml", b.String())
	cmd := exec.Command(sluiceBin, "validate", flow)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "ok: 1 flow(s)")
}

// sluice publish refuses a payload over the broker's limit while reading
// it, rather than loading it whole: fed an endless standard input, it
// stops after reading about the limit.
func TestPublishRefusesOversizedPayloads(t *testing.T) {
	dir := t.TempDir()
	in := &countingZeros{limit: 1 << 30}
	cmd := exec.Command(sluiceBin, "publish", "events")
	cmd.Dir, cmd.Stdin = dir, in
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "over the broker's message limit of 10485760 bytes")
	assert.Less(t, in.read.Load(), int64(11<<20), "read no more than the limit and a pipe's worth")
}

// countingZeros is an endless reader of zeros (up to limit) counting what
// was read.
type countingZeros struct {
	limit int64
	read  atomic.Int64
}

func (c *countingZeros) Read(p []byte) (int, error) {
	if c.read.Load() >= c.limit {
		return 0, io.EOF
	}
	clear(p)
	c.read.Add(int64(len(p)))
	return len(p), nil
}

// Flows that would hurt themselves, through the binary: a step written as
// a YAML alias runs; an alias bomb is refused saying so; a key template
// naming a missing field fails the run instead of writing to an empty
// name; a state machine key that is an object is refused; a JSON string
// message is archived as a record.
func TestFlowsThatWouldHurtThemselves(t *testing.T) {
	dir := t.TempDir()
	bomb := writeFlow(t, dir, "bomb.yaml", `name: bomb
on: {topic: in}
x: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
y: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
z: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
w: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
v: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
u: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
s: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
steps:
  - node: log
    with: {message: *g}
`)
	cmd := exec.Command(sluiceBin, "validate", bomb)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "YAML aliases expand too far")

	flows := filepath.Join(dir, "flows")
	require.NoError(t, os.MkdirAll(flows, 0o755))
	writeFlow(t, flows, "alias.yaml", `
name: alias
on: {topic: counts}
steps:
  - &bump {node: transform, with: {set: {n: '(payload.n ?? 0) + 1'}}}
  - *bump
  - node: publish
    with: {topic: counted}
`)
	writeFlow(t, flows, "keys.yaml", `
name: keys
on: {topic: reports}
steps:
  - node: transform
    with: {set: {body: 'toJSON(payload)'}}
  - node: storage.put
    with: {bucket: reports, key: 'r/{{ payload.user }}.json'}
`)
	writeFlow(t, flows, "machine.yaml", `
name: machine
on: {topic: orders}
steps:
  - node: state.transition
    with:
      machine: order
      key: payload.id
      event: payload.type
      transitions:
        - {event: placed, from: [new], to: placed}
`)
	writeFlow(t, flows, "logs.yaml", `
name: logs
on: {topic: logs}
steps:
  - node: archive
    with: {bucket: archive, max_count: 2, compression: none}
`)
	in := run(t, dir, flows)
	cli(t, dir, "publish", "counts", `{"n": 0}`)
	cli(t, dir, "publish", "reports", `{"title": "no user"}`)
	cli(t, dir, "publish", "orders", `{"id": {"x": 1}, "type": "placed"}`)
	cli(t, dir, "publish", "logs", `"a JSON string"`)
	cli(t, dir, "publish", "logs", `{"level": "info"}`)

	require.Eventually(t, func() bool {
		out := cli(t, dir, "dlq", "list")
		return strings.Contains(out, "keys") && strings.Contains(out, "machine")
	}, 30*time.Second, 100*time.Millisecond, "both refused runs are dead-lettered:\n%s", in.log)
	dl := cli(t, dir, "dlq", "list", "--flow", "keys")
	assert.Contains(t, dl, "payload.user", "the missing field is named")
	_, err = os.Stat(filepath.Join(dir, ".sluice", "buckets", "reports", "r", ".json"))
	assert.True(t, os.IsNotExist(err), "nothing written under an empty name")
	assert.Contains(t, cli(t, dir, "dlq", "list", "--flow", "machine"), "key")

	runs := runsOf(t, in, "alias", 1)
	require.Len(t, runs, 1)
	steps := runs[0]["steps"].([]any)
	assert.Len(t, steps, 3, "the anchored step and its alias both ran")

	require.Eventually(t, func() bool {
		found := false
		_ = filepath.Walk(filepath.Join(dir, ".sluice", "buckets", "archive"), func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), `"a JSON string"`) {
					found = true
				}
			}
			return nil
		})
		return found
	}, 30*time.Second, 100*time.Millisecond, "the JSON string is archived as a record:\n%s", in.log)
	assert.NotContains(t, cli(t, dir, "dlq", "list"), "logs")
}
