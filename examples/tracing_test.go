package examples_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/sluicehq/sluice/internal/otlptest"
)

// chainedFlows are two flows: front, on an HTTP route, publishes to
// orders.accepted, which back consumes.
var chainedFlows = map[string]string{
	"front.yaml": `name: front
on:
  http: {path: /orders, methods: [POST], mode: sync}
steps:
  - id: accept
    node: publish
    with: {topic: orders.accepted}
`,
	"back.yaml": `name: back
on:
  topic: orders.accepted
steps:
  - id: shape
    node: transform
    with:
      set: {seen: "true"}
`,
}

func writeFlows(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "flows")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, text := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	return dir
}

// runJSON reads `sluice runs show ID --json` in dir.
func runJSON(t *testing.T, dir, id string) map[string]any {
	t.Helper()
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(cli(t, dir, "runs", "show", id, "--json")), &r))
	return r
}

// TestTracingAcrossChainedFlows: a caller's traceparent on an HTTP request
// is continued by the run it starts, whose published message carries the
// run's context to the next flow: one trace across both runs, exported
// over OTLP/HTTP, with runs, step attempts and parents right; the trace id
// and the parent run are recorded with the runs.
func TestTracingAcrossChainedFlows(t *testing.T) {
	rc := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20") // ms: export at once
	t.Setenv("OTEL_SERVICE_NAME", "sluice-test")
	dir := t.TempDir()
	in := run(t, dir, writeFlows(t, chainedFlows))
	assert.Contains(t, in.log.String(), "tracing runs with OpenTelemetry")

	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequest(http.MethodPost, "http://"+in.addr+"/orders", strings.NewReader(`{"id":"o-1"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	frontRun := resp.Header.Get("X-Sluice-Run")
	require.NotEmpty(t, frontRun)

	var spans map[string]otlptest.Span
	require.Eventually(t, func() bool {
		spans = map[string]otlptest.Span{}
		for _, s := range rc.Spans() {
			spans[s.Name] = s
		}
		return len(spans) >= 4
	}, 20*time.Second, 20*time.Millisecond, "spans of both runs exported:\n%s", in.log)

	front, back := spans["run front"], spans["run back"]
	accept, shape := spans["step accept"], spans["step shape"]
	for _, s := range []otlptest.Span{front, back, accept, shape} {
		assert.Equal(t, callerTrace, s.TraceID, "%s: one trace, the caller's", s.Name)
		assert.Equal(t, "sluice-test", s.Service, "OTEL_SERVICE_NAME is honoured")
	}
	assert.Equal(t, callerSpan, front.ParentID, "the front run continues the caller's span")
	assert.Equal(t, tracepb.Span_SPAN_KIND_SERVER, front.Kind)
	assert.Equal(t, front.ID, accept.ParentID, "a step attempt is a child of its run")
	assert.Equal(t, front.ID, back.ParentID, "the next flow's run is a child of the run that published its input")
	assert.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, back.Kind)
	assert.Equal(t, back.ID, shape.ParentID)
	assert.Equal(t, map[string]string{"sluice.flow": "front", "sluice.trigger.kind": "http", "sluice.trigger": "http:/orders",
		"sluice.run": frontRun, "sluice.input": "POST /orders", "sluice.status": "succeeded", "sluice.attempts": "1"}, front.Attrs)
	assert.Equal(t, map[string]string{"sluice.flow": "front", "sluice.step": "accept", "sluice.node": "publish", "sluice.attempt": "1"}, accept.Attrs)
	assert.Equal(t, frontRun, back.Attrs["sluice.parent_run"])

	// The runs record the trace and their lineage.
	backRun := back.Attrs["sluice.run"]
	require.Eventually(t, func() bool {
		return strings.Contains(cli(t, dir, "runs", "--flow", "back"), "succeeded")
	}, 10*time.Second, 20*time.Millisecond)
	fr, br := runJSON(t, dir, frontRun), runJSON(t, dir, backRun)
	assert.Equal(t, callerTrace, fr["trace_id"])
	assert.Equal(t, callerTrace, br["trace_id"])
	assert.Nil(t, fr["parent_run"], "a request has no parent run")
	assert.Equal(t, frontRun, br["parent_run"])
	show := cli(t, dir, "runs", "show", backRun)
	assert.Contains(t, show, "trace     "+callerTrace)
	assert.Contains(t, show, "parent    "+frontRun)
}

// TestTracingFailedStepsAndAsyncRequests: every attempt of a failing step
// is its own span, marked as an error, and the run's span carries the
// failure; a queued (async) request's run continues the caller's trace
// too, in the process that consumes it.
func TestTracingFailedStepsAndAsyncRequests(t *testing.T) {
	rc := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rc.URL+"/v1/traces")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	dir := t.TempDir()
	in := run(t, dir, writeFlows(t, map[string]string{"jobs.yaml": `name: jobs
on:
  http: {path: /jobs, methods: [POST], mode: async}
retry: {max_attempts: 3, backoff: 1ms}
steps:
  - id: check
    node: http.call
    with: {url: "` + down.URL + `"}
`}))
	const callerTrace = "0af7651916cd43dd8448eb211c80319c"
	req, err := http.NewRequest(http.MethodPost, "http://"+in.addr+"/jobs", strings.NewReader(`{"n":1}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+callerTrace+"-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var accepted map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&accepted))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.Eventually(t, func() bool { return len(rc.Find("run jobs")) == 1 }, 20*time.Second, 20*time.Millisecond,
		"the run's span exported:\n%s", in.log)
	runSpan := rc.Find("run jobs")[0]
	assert.Equal(t, callerTrace, runSpan.TraceID)
	assert.Equal(t, "b7ad6b7169203331", runSpan.ParentID)
	attempts := rc.Find("step check")
	require.Len(t, attempts, 3, "one span per attempt")
	seen := map[string]bool{}
	for _, a := range attempts {
		assert.Equal(t, runSpan.ID, a.ParentID)
		assert.True(t, a.Error, "a failed attempt is an error span")
		seen[a.Attrs["sluice.attempt"]] = true
	}
	assert.Equal(t, map[string]bool{"1": true, "2": true, "3": true}, seen)
	assert.Equal(t, "dead_lettered", runSpan.Attrs["sluice.status"])
	assert.True(t, runSpan.Error)
	assert.Equal(t, "check", runSpan.Attrs["sluice.step"])

	// The runs API names the trace, for the caller to look the run up.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + in.addr + accepted["status_url"])
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st map[string]any
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st["trace_id"] == callerTrace
	}, 10*time.Second, 20*time.Millisecond)
}
