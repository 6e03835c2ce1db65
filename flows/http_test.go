package flows_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// sleeper waits for its context: a step that never finishes in time.
type sleeper struct{}

func (sleeper) Process(ctx context.Context, _ *nodes.Envelope) error {
	<-ctx.Done()
	return ctx.Err()
}

// outage fails transiently, always.
type outage struct{}

func (outage) Process(context.Context, *nodes.Envelope) error { return io.ErrUnexpectedEOF }

func call(t *testing.T, method, url, body string, header ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, resp.Header, out
}

func TestHTTPTriggerSyncFlows(t *testing.T) {
	t.Setenv("TEST_API_KEYS", "k-1, k-2")
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{Type: "test.sleep", Summary: "sleeps", New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return sleeper{}, nil }}))
	require.NoError(t, reg.Register(nodes.Spec{Type: "test.outage", Summary: "fails", New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return outage{}, nil }}))
	h := start(t, `
name: quote
on:
  http: {path: "/quotes/{id}", methods: [POST], api_keys_env: TEST_API_KEYS, headers: [X-Tenant]}
max_body: 1024
steps:
  - node: transform
    with:
      set:
        id: request.params.id
        tenant: request.headers["x-tenant"]
        total: payload.qty * payload.price
  - node: respond
    with:
      status: 201
      headers: {Location: "/quotes/{{ payload.id }}"}
---
name: echo
on:
  http: {path: /echo, methods: [GET]}
steps:
  - node: transform
    with: {payload: 'request.query'}
---
name: slow
on:
  http: {path: /slow, methods: [GET]}
timeout: 200ms
steps:
  - node: test.sleep
---
name: flaky
on:
  http: {path: /flaky, methods: [GET]}
retry: {max_attempts: 2, backoff: 1ms}
steps:
  - node: test.outage
`, reg)
	srv := httptest.NewServer(h.engine.HTTPHandler())
	defer srv.Close()

	code, hdr, out := call(t, "POST", srv.URL+"/quotes/q-7", `{"qty": 3, "price": 2.5}`, "X-API-Key", "k-2", "X-Tenant", "acme")
	assert.Equal(t, 201, code)
	assert.Equal(t, "/quotes/q-7", hdr.Get("Location"))
	assert.Equal(t, map[string]any{"id": "q-7", "tenant": "acme", "qty": 3.0, "price": 2.5, "total": 7.5}, out)
	assert.NotEmpty(t, hdr.Get("X-Sluice-Run"))

	code, hdr, out = call(t, "POST", srv.URL+"/quotes/q-7", `{}`, "X-API-Key", "wrong")
	assert.Equal(t, 401, code)
	assert.Contains(t, out["error"], "API key")
	assert.NotEmpty(t, hdr.Get("WWW-Authenticate"))
	code, _, _ = call(t, "POST", srv.URL+"/quotes/q-7", `{}`)
	assert.Equal(t, 401, code, "no key")

	code, _, out = call(t, "POST", srv.URL+"/quotes/q-7", `{"qty": 1, "pad": "`+strings.Repeat("x", 2000)+`"}`, "X-API-Key", "k-1")
	assert.Equal(t, 413, code)
	assert.Contains(t, out["error"], "over the limit of 1024 bytes")

	code, _, out = call(t, "POST", srv.URL+"/quotes/q-7", `{"qty": "three", "price": 2}`, "X-API-Key", "k-1")
	assert.Equal(t, 422, code, "a permanent error: the reason is the answer")
	assert.Contains(t, out["error"], "invalid operation")
	assert.NotEmpty(t, out["run"])

	code, _, out = call(t, "POST", srv.URL+"/quotes/q-7", `{not json`, "X-API-Key", "k-1")
	assert.Equal(t, 400, code)
	assert.Contains(t, out["error"], "not valid JSON")

	code, _, out = call(t, "GET", srv.URL+"/echo?a=1&b=x&b=y", "")
	assert.Equal(t, 200, code, "no respond step: 200 and the payload")
	assert.Equal(t, map[string]any{"a": "1", "b": []any{"x", "y"}}, out)

	code, _, out = call(t, "GET", srv.URL+"/slow", "")
	assert.Equal(t, 504, code)
	assert.Contains(t, out["error"], "did not finish within 200ms")

	code, hdr, out = call(t, "GET", srv.URL+"/flaky", "")
	assert.Equal(t, 503, code)
	assert.Equal(t, "5", hdr.Get("Retry-After"))
	assert.Equal(t, "temporarily unavailable; retry later", out["error"], "internals stay in the ledger")

	code, _, _ = call(t, "GET", srv.URL+"/nowhere", "")
	assert.Equal(t, 404, code)
	code, _, _ = call(t, "DELETE", srv.URL+"/echo", "")
	assert.Equal(t, 405, code)

	runs := h.waitRuns(state.Filter{Flow: "quote"}, 2)
	statuses := map[int]int{}
	for _, r := range runs {
		statuses[r.HTTPStatus]++
	}
	assert.Equal(t, map[int]int{201: 1, 422: 1}, statuses, "every run in the ledger with its status code")
	slow := h.waitRuns(state.Filter{Flow: "slow"}, 1)
	assert.Equal(t, 504, slow[0].HTTPStatus)
	assert.Less(t, slow[0].Duration, 5*time.Second)
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	code, _, out := call(t, "GET", url, "")
	return code, out
}

func TestHTTPTriggerAsyncAndAuto(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	reg := nodes.Global().Clone()
	require.NoError(t, reg.Register(nodes.Spec{Type: "test.gate", Summary: "waits", New: func(*nodes.Config, nodes.Deps) (nodes.Node, error) { return g, nil }}))
	h := start(t, `
name: jobs
on:
  http: {path: /jobs, methods: [POST], mode: async}
steps:
  - node: transform
    with: {set: {double: payload.n * 2}}
  - node: respond
    with: {status: 201}
---
name: quick
on:
  http: {path: /quick, methods: [POST], mode: auto, wait: 10s}
steps:
  - node: transform
    with: {set: {ok: true}}
---
name: slow
on:
  http: {path: /slow, methods: [POST], mode: auto, wait: 50ms}
steps:
  - node: test.gate
---
name: strict
on:
  http: {path: /strict, methods: [POST], mode: async}
steps:
  - node: transform
    with: {set: {n: payload.n * 2}}
`, reg)
	srv := httptest.NewServer(h.engine.HTTPHandler())
	defer srv.Close()

	// async: 202 at once, the status URL, then the stored result.
	code, hdr, out := call(t, "POST", srv.URL+"/jobs", `{"n": 21}`)
	require.Equal(t, 202, code)
	id := out["run"].(string)
	assert.Equal(t, "/runs/"+id, hdr.Get("Location"))
	require.Eventually(t, func() bool {
		_, st := getJSON(t, srv.URL+"/runs/"+id)
		return st["status"] == "succeeded"
	}, 20*time.Second, 10*time.Millisecond)
	_, st := getJSON(t, srv.URL+"/runs/"+id)
	assert.EqualValues(t, 201, st["http_status"])
	code, res := getJSON(t, srv.URL+"/runs/"+id+"/result")
	assert.Equal(t, 201, code)
	assert.Equal(t, map[string]any{"n": 21.0, "double": 42.0}, res)

	// auto, quick: the answer itself.
	code, _, out = call(t, "POST", srv.URL+"/quick", `{"a": 1}`)
	assert.Equal(t, 200, code)
	assert.Equal(t, map[string]any{"a": 1.0, "ok": true}, out)

	// auto, slow: 202 after the wait; the run finishes later.
	code, _, out = call(t, "POST", srv.URL+"/slow", `{}`)
	require.Equal(t, 202, code)
	slow := out["run"].(string)
	_, st = getJSON(t, srv.URL+"/runs/"+slow)
	assert.Equal(t, "accepted", st["status"], "queued, not finished")
	code, _ = getJSON(t, srv.URL+"/runs/"+slow+"/result")
	assert.Equal(t, 404, code, "no result yet")
	close(g.release)
	require.Eventually(t, func() bool {
		code, _ := getJSON(t, srv.URL+"/runs/"+slow+"/result")
		return code == 200
	}, 20*time.Second, 10*time.Millisecond)

	// A permanent error: dead-lettered, the reason in the status and result.
	code, _, out = call(t, "POST", srv.URL+"/strict", `{"n": "x"}`)
	require.Equal(t, 202, code)
	bad := out["run"].(string)
	require.Eventually(t, func() bool {
		_, st := getJSON(t, srv.URL+"/runs/"+bad)
		return st["status"] == "dead_lettered"
	}, 20*time.Second, 10*time.Millisecond)
	_, st = getJSON(t, srv.URL+"/runs/"+bad)
	assert.Contains(t, st["error"], "invalid operation")
	code, res = getJSON(t, srv.URL+"/runs/"+bad+"/result")
	assert.Equal(t, 422, code)
	assert.Contains(t, res["error"], "invalid operation")
	assert.Len(t, h.consume("strict.dlq", 1), 1)

	code, _ = getJSON(t, srv.URL+"/runs/nope")
	assert.Equal(t, 404, code)
}

func TestHTTPAuthSchemesAndCORS(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pub, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)
	t.Setenv("TEST_JWT_SECRET", "s3cret")
	t.Setenv("TEST_JWT_PUB", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	t.Setenv("TEST_HMAC", "hook-key")
	h := start(t, `
name: hs
on:
  http: {path: /hs, methods: [GET], jwt_secret_env: TEST_JWT_SECRET, jwt_issuer: acme}
steps:
  - node: transform
    with: {payload: '{"user": request.claims.sub}'}
---
name: rs
on:
  http: {path: /rs, methods: [GET], jwt_public_key_env: TEST_JWT_PUB}
steps:
  - node: transform
    with: {payload: '{"user": request.claims.sub}'}
---
name: hook
on:
  http: {path: /hook, methods: [POST], hmac_secret_env: TEST_HMAC}
steps:
  - node: transform
    with: {set: {verified: true}}
---
name: browser
on:
  http: {path: /browser, methods: [POST], cors_origins: ["https://app.example"]}
steps:
  - node: transform
    with: {set: {ok: true}}
`, nil)
	srv := httptest.NewServer(h.engine.HTTPHandler())
	defer srv.Close()
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		require.NoError(t, err)
		return "Bearer " + s
	}
	valid := jwt.MapClaims{"sub": "ada", "iss": "acme", "exp": time.Now().Add(time.Hour).Unix()}

	code, _, out := call(t, "GET", srv.URL+"/hs", "", "Authorization", sign(jwt.SigningMethodHS256, []byte("s3cret"), valid))
	assert.Equal(t, 200, code)
	assert.Equal(t, map[string]any{"user": "ada"}, out)
	for name, auth := range map[string]string{
		"none":       "",
		"wrong key":  sign(jwt.SigningMethodHS256, []byte("other"), valid),
		"expired":    sign(jwt.SigningMethodHS256, []byte("s3cret"), jwt.MapClaims{"sub": "ada", "iss": "acme", "exp": time.Now().Add(-time.Minute).Unix()}),
		"wrong iss":  sign(jwt.SigningMethodHS256, []byte("s3cret"), jwt.MapClaims{"sub": "ada", "iss": "evil", "exp": time.Now().Add(time.Hour).Unix()}),
		"no expiry":  sign(jwt.SigningMethodHS256, []byte("s3cret"), jwt.MapClaims{"sub": "ada", "iss": "acme"}),
		"alg switch": sign(jwt.SigningMethodRS256, rsaKey, valid),
	} {
		code, _, _ := call(t, "GET", srv.URL+"/hs", "", "Authorization", auth)
		assert.Equal(t, 401, code, name)
	}
	code, _, out = call(t, "GET", srv.URL+"/rs", "", "Authorization", sign(jwt.SigningMethodRS256, rsaKey, valid))
	assert.Equal(t, 200, code)
	assert.Equal(t, map[string]any{"user": "ada"}, out)
	code, _, _ = call(t, "GET", srv.URL+"/rs", "", "Authorization", sign(jwt.SigningMethodHS256, []byte("s3cret"), valid))
	assert.Equal(t, 401, code, "HS256 where RS256 is required")

	body := `{"event": "push"}`
	mac := hmac.New(sha256.New, []byte("hook-key"))
	mac.Write([]byte(body))
	code, _, out = call(t, "POST", srv.URL+"/hook", body, "X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	assert.Equal(t, 200, code)
	assert.Equal(t, true, out["verified"])
	code, _, out = call(t, "POST", srv.URL+"/hook", `{"event": "forged"}`, "X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	assert.Equal(t, 401, code)
	assert.Contains(t, out["error"], "does not match the body")

	req, err := http.NewRequest("OPTIONS", srv.URL+"/browser", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Less(t, resp.StatusCode, 300)
	assert.Equal(t, "https://app.example", resp.Header.Get("Access-Control-Allow-Origin"))
	code, hdr, _ := call(t, "POST", srv.URL+"/browser", `{}`, "Origin", "https://app.example")
	assert.Equal(t, 200, code)
	assert.Equal(t, "https://app.example", hdr.Get("Access-Control-Allow-Origin"))
	_, hdr, _ = call(t, "POST", srv.URL+"/browser", `{}`, "Origin", "https://evil.example")
	assert.Empty(t, hdr.Get("Access-Control-Allow-Origin"))
}

func multipartBody(t *testing.T, fields map[string]string, file string, data []byte) (string, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		require.NoError(t, mw.WriteField(k, v))
	}
	fw, err := mw.CreateFormFile("image", file)
	require.NoError(t, err)
	_, err = fw.Write(data)
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	return buf.String(), mw.FormDataContentType()
}

func TestHTTPMultipartUploads(t *testing.T) {
	h := startOn(t, t.TempDir(), "mem://", "mem://", `
name: upload
on:
  http: {path: /images, methods: [POST], uploads: uploads}
steps:
  - id: thumb
    node: image.thumbnail
    with: {width: 64, height: 64}
  - id: save
    node: storage.put
    with: {bucket: thumbs}
  - node: transform
    with:
      payload: '{"title": payload.title, "key": object.key, "files": len(request.files), "thumb": steps.save.key, "width": steps.thumb.width}'
  - node: respond
    with: {status: 201}
---
name: upload-later
on:
  http: {path: /later, methods: [POST], uploads: uploads, mode: async}
steps:
  - node: image.info
    with: {into: ""}
  - node: transform
    with: {payload: '{"key": object.key, "note": payload.note}'}
`, nil)
	srv := httptest.NewServer(h.engine.HTTPHandler())
	defer srv.Close()
	post := func(path, body, ctype string) (int, map[string]any) {
		resp, err := http.Post(srv.URL+path, ctype, strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	body, ctype := multipartBody(t, map[string]string{"title": "sunset"}, "sun set.jpg", jpegBytes(t, 320, 240))
	code, out := post("/images", body, ctype)
	require.Equal(t, 201, code, "%v", out)
	assert.Equal(t, "sunset", out["title"])
	assert.EqualValues(t, 1, out["files"])
	assert.EqualValues(t, 64, out["width"])
	assert.True(t, strings.HasSuffix(out["key"].(string), "/sun set.jpg"), out["key"])
	stored, _, err := h.store.ReadAll(t.Context(), "uploads", out["key"].(string), 0)
	require.NoError(t, err)
	assert.Equal(t, jpegBytes(t, 320, 240), stored, "the upload, as sent")
	_, _, err = h.store.ReadAll(t.Context(), "thumbs", out["thumb"].(string), 0)
	require.NoError(t, err)

	body, ctype = multipartBody(t, nil, "notes.jpg", []byte("not an image"))
	code, out = post("/images", body, ctype)
	assert.Equal(t, 422, code)
	assert.Contains(t, out["error"], "not a supported image")

	code, _ = post("/images", "--x\r\nbroken", "multipart/form-data; boundary=x")
	assert.Equal(t, 400, code)

	body, ctype = multipartBody(t, map[string]string{"note": "later"}, "a.jpg", jpegBytes(t, 32, 32))
	code, out = post("/later", body, ctype)
	require.Equal(t, 202, code)
	id := out["run"].(string)
	require.Eventually(t, func() bool {
		code, _ := getJSON(t, srv.URL+"/runs/"+id+"/result")
		return code == 200
	}, 20*time.Second, 10*time.Millisecond)
	_, res := getJSON(t, srv.URL+"/runs/"+id+"/result")
	assert.Equal(t, map[string]any{"key": id + "/a.jpg", "note": "later"}, res)
}

// A result over MaxKeptResult is not kept in the run ledger: /result
// answers 410 with the reason, the run itself succeeded.
func TestHTTPLargeAsyncResultIsNotKept(t *testing.T) {
	h := start(t, `
name: big
on:
  http: {path: /big, methods: [POST], mode: async}
steps:
  - node: respond
`, nil)
	srv := httptest.NewServer(h.engine.HTTPHandler())
	defer srv.Close()
	code, _, out := call(t, "POST", srv.URL+"/big", `"`+strings.Repeat("x", 2<<20)+`"`) // echoed back
	require.Equal(t, 202, code)
	id := out["run"].(string)
	require.Eventually(t, func() bool {
		_, st := getJSON(t, srv.URL+"/runs/"+id)
		return st["status"] == "succeeded"
	}, 20*time.Second, 10*time.Millisecond)
	code, res := getJSON(t, srv.URL+"/runs/"+id+"/result")
	assert.Equal(t, 410, code)
	assert.Contains(t, res["error"], "write large results to a bucket")
	assert.EqualValues(t, 200, res["status"])
	assert.Greater(t, res["bytes"], float64(flows.MaxKeptResult))
}
