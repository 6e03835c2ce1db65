package httpcall_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/httpcall"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// seen is what the test server received.
type seen struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
}

type server struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

// serve starts a real HTTP server answering with h after recording the
// request.
func serve(t *testing.T, h http.HandlerFunc) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), b})
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

func envelope(id string, payload any) *nodes.Envelope {
	return envelopeAt(id, payload, "notify")
}

func envelopeAt(id string, payload any, step string) *nodes.Envelope {
	env := nodestest.Envelope(nil, 0, step)
	env.Flow, env.Run, env.Event.ID, env.Payload = "orders", "run-1", id, payload
	return env
}

func start(t *testing.T, with string) nodes.Node {
	t.Helper()
	n := nodestest.New(t, "http.call", with, nodes.Deps{})
	require.NoError(t, n.(nodes.Starter).Start(t.Context()))
	t.Cleanup(func() { _ = n.(nodes.Closer).Close() })
	return n
}

func TestPostsPayloadAndDecodesAnswer(t *testing.T) {
	t.Setenv("HOOK_TOKEN", "Bearer s3cret")
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accepted": true, "order": "A-1"}`)
	})
	n := start(t, `{url: "`+srv.URL+`/orders/{{ payload.id }}?src=sluice", headers: {X-Flow: "{{ flow }}"}, secret_headers: {Authorization: HOOK_TOKEN}}`)
	env := envelope("msg-1", map[string]any{"id": "A-1", "qty": 2.0})
	require.NoError(t, n.Process(t.Context(), env))

	reqs := srv.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, "POST", r.Method)
	assert.Equal(t, "/orders/A-1", r.Path)
	assert.Equal(t, "src=sluice", r.Query)
	assert.JSONEq(t, `{"id":"A-1","qty":2}`, string(r.Body))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, "orders", r.Header.Get("X-Flow"))
	assert.Equal(t, "Bearer s3cret", r.Header.Get("Authorization"))
	assert.Equal(t, httpcall.IdempotencyKey("msg-1", "orders", "notify"), r.Header.Get("Idempotency-Key"))
	assert.Equal(t, map[string]any{"accepted": true, "order": "A-1"}, env.Payload)
	assert.Equal(t, 200.0, env.Steps["notify"].(map[string]any)["status"])
}

func TestStatusesMapOntoRetries(t *testing.T) {
	status, retryAfter := 0, ""
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":"nope"}`)
	})
	n := start(t, `{url: "`+srv.URL+`"}`)
	for _, tc := range []struct {
		status     int
		retryAfter string
		permanent  bool
		wait       time.Duration
	}{
		{400, "", true, 0},
		{404, "", true, 0},
		{422, "", true, 0},
		{408, "", false, 0},
		{429, "7", false, 7 * time.Second},
		{500, "", false, 0},
		{503, "2", false, 2 * time.Second},
		{503, time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat), false, 90 * time.Second},
	} {
		status, retryAfter = tc.status, tc.retryAfter
		err := n.Process(t.Context(), envelope("m", map[string]any{}))
		require.Error(t, err, "status %d", tc.status)
		assert.Equal(t, tc.permanent, nodes.IsPermanent(err), "status %d: %v", tc.status, err)
		assert.Contains(t, err.Error(), `{"error":"nope"}`)
		var se *httpcall.StatusError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, tc.status, se.Status)
		d, ok := nodes.RetryAfterOf(err)
		assert.Equal(t, tc.wait != 0, ok, "status %d", tc.status)
		assert.InDelta(t, tc.wait.Seconds(), d.Seconds(), 2, "status %d", tc.status)
	}
}

func TestConnectionErrorsAndTimeoutsAreTransient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	err = start(t, `{url: "http://`+addr+`/x"}`).Process(t.Context(), envelope("m", nil))
	require.Error(t, err)
	assert.False(t, nodes.IsPermanent(err), "%v", err)

	release := make(chan struct{})
	defer close(release)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err = start(t, `{url: "`+srv.URL+`"}`).Process(ctx, envelope("m", nil))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, nodes.IsPermanent(err))
}

func TestIdempotencyKeyIsStableAcrossRedeliveries(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	n := start(t, `{url: "`+srv.URL+`"}`)
	other := nodestest.New(t, "http.call", `{url: "`+srv.URL+`"}`, nodes.Deps{})
	// The same input twice (a retry, then a redelivery to a new process's
	// node), then another input, then the same input at another step.
	require.NoError(t, n.Process(t.Context(), envelope("in-7", nil)))
	require.NoError(t, other.Process(t.Context(), envelope("in-7", nil)))
	require.NoError(t, n.Process(t.Context(), envelope("in-8", nil)))
	env := envelopeAt("in-7", nil, "archive")
	require.NoError(t, n.Process(t.Context(), env))
	reqs := srv.requests()
	require.Len(t, reqs, 4)
	k := func(i int) string { return reqs[i].Header.Get("Idempotency-Key") }
	assert.NotEmpty(t, k(0))
	assert.Equal(t, k(0), k(1))
	assert.NotEqual(t, k(0), k(2))
	assert.NotEqual(t, k(0), k(3))
}

func TestSignsBodyAndSendsRawBodies(t *testing.T) {
	t.Setenv("HOOK_SECRET", "shh")
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write([]byte("\x89PNG fake"))
	})
	n := start(t, `{url: "`+srv.URL+`", method: PUT, body: body, response: body, hmac_secret_env: HOOK_SECRET, hmac_header: X-Hub-Signature-256}`)
	env := envelope("m", map[string]any{"keep": true})
	env.SetBody([]byte("raw bytes"), "text/plain")
	require.NoError(t, n.Process(t.Context(), env))
	r := srv.requests()[0]
	assert.Equal(t, "PUT", r.Method)
	assert.Equal(t, "raw bytes", string(r.Body))
	assert.Equal(t, "text/plain", r.Header.Get("Content-Type"))
	assert.Equal(t, httpcall.Sign([]byte("shh"), []byte("raw bytes")), r.Header.Get("X-Hub-Signature-256"))
	// Checked with: printf "raw bytes" | openssl dgst -sha256 -hmac shh
	assert.Equal(t, "sha256=711525d185a29a2d8a017be8fdde4b6ca5b502cc5bc574907cd3c401b7ffe0e1", httpcall.Sign([]byte("shh"), []byte("raw bytes")))
	body, err := env.Body(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "\x89PNG fake", string(body))
	assert.Equal(t, "image/png", env.BodyType())
	assert.Equal(t, map[string]any{"keep": true}, env.Payload, "response: body keeps the payload")

	// GET sends no body unless asked; json sends an expression's value.
	n = start(t, `{url: "`+srv.URL+`", method: GET, response: ignore}`)
	require.NoError(t, n.Process(t.Context(), envelope("m", map[string]any{"a": 1.0})))
	n = start(t, `{url: "`+srv.URL+`", json: '{"total": payload.a * 2}', response: ignore}`)
	require.NoError(t, n.Process(t.Context(), envelope("m", map[string]any{"a": 1.0})))
	reqs := srv.requests()
	assert.Empty(t, reqs[1].Body)
	assert.JSONEq(t, `{"total":2}`, string(reqs[2].Body))

	// A missing secret is a clear permanent error naming the variable.
	t.Setenv("HOOK_SECRET", "")
	err = start(t, `{url: "`+srv.URL+`", hmac_secret_env: HOOK_SECRET}`).Process(t.Context(), envelope("m", nil))
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "HOOK_SECRET")
}

func TestLimitsAndBadAnswers(t *testing.T) {
	answer := strings.Repeat("x", 2000)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, answer) })
	err := start(t, `{url: "`+srv.URL+`", max_response: 1000}`).Process(t.Context(), envelope("m", nil))
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "max_response")
	err = start(t, `{url: "`+srv.URL+`"}`).Process(t.Context(), envelope("m", nil))
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "not JSON")

	_, err = nodestest.Build("http.call", `{url: "ftp://x", json: payload, body: body}`, nodes.Deps{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `field "url": "ftp://x": want an http:// or https:// URL`)
	assert.Contains(t, err.Error(), `field "json"`)
	_, err = nodestest.Build("http.call", `{url: "http://x", secret_headers: {Authorization: ""}}`, nodes.Deps{})
	assert.ErrorContains(t, err, "name the environment variable")
}

func TestTLSWithCustomCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"tls": r.TLS != nil})
	}))
	defer srv.Close()
	// Untrusted by default: a transient error (the certificate could be
	// fixed) that names the cause.
	err := start(t, `{url: "`+srv.URL+`"}`).Process(t.Context(), envelope("m", nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate")

	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o644))
	env := envelope("m", nil)
	require.NoError(t, start(t, `{url: "`+srv.URL+`", ca_file: `+filepath.Join(dir, "ca.pem")+`}`).Process(t.Context(), env))
	assert.Equal(t, map[string]any{"tls": true}, env.Payload)

	n := nodestest.New(t, "http.call", `{url: "`+srv.URL+`", ca_file: missing.pem}`, nodes.Deps{})
	assert.ErrorContains(t, n.(nodes.Starter).Start(t.Context()), "missing.pem")
}

// TestSendsTraceContext: the call carries the step's trace context, or
// (untraced) the one the run received; a traceparent the flow sets wins.
func TestSendsTraceContext(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	n := start(t, `{url: "`+srv.URL+`"}`)

	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))
	require.NoError(t, n.Process(ctx, envelope("msg-1", map[string]any{})))

	env := envelope("msg-2", map[string]any{})
	env.Meta["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	env.Meta["tracestate"] = "vendor=1"
	require.NoError(t, n.Process(t.Context(), env))

	own := start(t, `{url: "`+srv.URL+`", headers: {traceparent: "00-11111111111111111111111111111111-2222222222222222-01"}}`)
	require.NoError(t, own.Process(ctx, envelope("msg-3", map[string]any{})))

	reqs := srv.requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", reqs[0].Header.Get("traceparent"))
	assert.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", reqs[1].Header.Get("traceparent"))
	assert.Equal(t, "vendor=1", reqs[1].Header.Get("tracestate"))
	assert.Equal(t, "00-11111111111111111111111111111111-2222222222222222-01", reqs[2].Header.Get("traceparent"))
}
