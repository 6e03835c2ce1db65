// Package httpcall holds the http.call node: a request to any HTTP service
// from a flow, also used as an outgoing webhook.
package httpcall

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

const (
	fieldMethod         = "method"
	fieldURL            = "url"
	fieldHeaders        = "headers"
	fieldSecretHeaders  = "secret_headers"
	fieldBody           = "body"
	fieldJSON           = "json"
	fieldContentType    = "content_type"
	fieldResponse       = "response"
	fieldMaxResponse    = "max_response"
	fieldIdempotencyKey = "idempotency_key"
	fieldHMACSecretEnv  = "hmac_secret_env"
	fieldHMACHeader     = "hmac_header"
	fieldCAFile         = "ca_file"
)

// idempotencyNS namespaces the derived Idempotency-Key values.
var idempotencyNS = uuid.MustParse("6f1c7d1e-4a43-4d39-9a53-3c1b7c3f2a10")

func init() {
	nodes.Register(nodes.Spec{
		Type:    "http.call",
		Summary: "Call an HTTP service (or send a webhook) and keep its answer.",
		Description: "Method, URL and header values are templates. The body is the payload as JSON by default " +
			"(`json` sends an expression's value instead; `body: body` sends the message body, e.g. an image; " +
			"`body: none` sends nothing). A JSON answer becomes the payload (`response: json`), or the answer " +
			"is kept as the body (`response: body`), or ignored. 4xx answers are permanent errors except 408 " +
			"and 429; 5xx, 408, 429, connection errors and timeouts are transient, and a Retry-After header " +
			"tells the engine when to try again. Every request carries an Idempotency-Key derived from the " +
			"input message, the flow and the step, the same on every retry and redelivery. With " +
			"hmac_secret_env the body is signed (HMAC-SHA256, hex, `sha256=` prefix) in hmac_header, as " +
			"Sluice's HTTP trigger verifies it. Secrets come from environment variables only. The step's " +
			"timeout bounds the call. The result (steps.<id>) holds status, content_type and size, and the " +
			"decoded answer under payload for JSON.",
		Fields: []nodes.Field{
			{Name: fieldMethod, Kind: nodes.Template, Default: "POST", Doc: "HTTP method."},
			{Name: fieldURL, Kind: nodes.Template, Required: true, Doc: "URL (http or https)."},
			{Name: fieldHeaders, Kind: nodes.Map, Elem: nodes.Template, Doc: "Header name → value template."},
			{Name: fieldSecretHeaders, Kind: nodes.Map, Elem: nodes.String, Doc: "Header name → environment variable holding its value (e.g. Authorization: API_TOKEN)."},
			{Name: fieldBody, Kind: nodes.Enum, Options: []string{"payload", "body", "none"}, Default: "payload", Doc: "What to send: the payload as JSON, the message body as it is, or nothing (GET and HEAD send nothing unless set)."},
			{Name: fieldJSON, Kind: nodes.Expr, Doc: "Send this expression's value as JSON instead of the payload."},
			{Name: fieldContentType, Kind: nodes.String, Doc: "Content type of the request body; application/json for JSON, the body's own type otherwise."},
			{Name: fieldResponse, Kind: nodes.Enum, Options: []string{"json", "body", "ignore"}, Default: "json", Doc: "What to do with the answer: decode JSON into the payload (an empty answer keeps it), keep it as the body, or ignore it."},
			{Name: fieldMaxResponse, Kind: nodes.Int, Default: 10 << 20, Min: 1, Max: 1 << 40, Doc: "Largest answer accepted, in bytes; a larger one is a permanent error."},
			{Name: fieldIdempotencyKey, Kind: nodes.Bool, Default: true, Doc: "Send an Idempotency-Key header derived from the input identity, flow and step."},
			{Name: fieldHMACSecretEnv, Kind: nodes.String, Doc: "Sign the body with HMAC-SHA256 using the secret in this environment variable."},
			{Name: fieldHMACHeader, Kind: nodes.String, Default: "X-Signature", Doc: "Header carrying the signature (`sha256=<hex>`)."},
			{Name: fieldCAFile, Kind: nodes.String, Doc: "PEM file of CA certificates to trust for https, in addition to the system's; relative to the flow file's folder."},
		},
		Examples: []nodes.Example{
			{Title: "Notify a webhook with the payload", YAML: "id: notify\nnode: http.call\ntimeout: 5s\nwith:\n  url: http://hooks.internal/orders\n  hmac_secret_env: HOOK_SECRET"},
			{Title: "Resize through another service, keep the image", YAML: "node: http.call\nwith:\n  url: \"http://resizer:8080/resize?w=256&name={{ object.key }}\"\n  body: body\n  response: body\n  secret_headers: {Authorization: RESIZER_TOKEN}"},
		},
		New: newCall,
	})
}

// Call is the http.call node. It is safe for concurrent use.
type Call struct {
	method, url   *eval.Template
	headers       []nodes.MapEntry
	secretHeaders []nodes.MapEntry
	body          string
	bodySet       bool
	json          *eval.Program
	contentType   string
	response      string
	maxResponse   int64
	idempotency   bool
	hmacEnv       string
	hmacHeader    string
	caFile        string

	client *http.Client
}

func newCall(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	n := &Call{
		method: c.Template(fieldMethod), url: c.Template(fieldURL),
		headers: c.Map(fieldHeaders), secretHeaders: c.Map(fieldSecretHeaders),
		body: c.String(fieldBody), bodySet: c.Has(fieldBody), json: c.Expr(fieldJSON),
		contentType: c.String(fieldContentType), response: c.String(fieldResponse),
		maxResponse: int64(c.Int(fieldMaxResponse)), idempotency: c.Bool(fieldIdempotencyKey),
		hmacEnv: c.String(fieldHMACSecretEnv), hmacHeader: c.String(fieldHMACHeader),
	}
	var probs nodes.Problems
	add := func(err error) { probs = append(probs, err.(nodes.Problems)...) }
	if n.json != nil && c.Has(fieldBody) && n.body != "payload" {
		add(c.Errorf(fieldJSON, "json sends an expression's value: it cannot go with body: %s", n.body))
	}
	if s, static := n.url.Static(); static && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		add(c.Errorf(fieldURL, "%q: want an http:// or https:// URL", s))
	}
	for _, e := range n.secretHeaders {
		if e.Value.(string) == "" {
			add(c.Errorf(fieldSecretHeaders, "header %s: name the environment variable holding its value", e.Key))
		}
	}
	if f := c.String(fieldCAFile); f != "" {
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(c.Pos(fieldCAFile).File), f)
		}
		n.caFile = f
	}
	if len(probs) > 0 {
		return nil, probs
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	n.client = &http.Client{Transport: tr}
	return n, nil
}

// Start adds the CA file's certificates to the client's trusted roots.
func (n *Call) Start(context.Context) error {
	if n.caFile == "" {
		return nil
	}
	pem, err := os.ReadFile(n.caFile)
	if err != nil {
		return fmt.Errorf("http.call: ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("http.call: ca_file %s holds no PEM certificate", n.caFile)
	}
	n.client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return nil
}

// Close drops idle connections.
func (n *Call) Close() error {
	n.client.CloseIdleConnections()
	return nil
}

// Process sends the request and keeps the answer as the flow asked.
func (n *Call) Process(ctx context.Context, env *nodes.Envelope) error {
	req, err := n.request(ctx, env)
	if err != nil {
		return err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", req.Method, redact(req), ctx.Err())
		}
		return fmt.Errorf("%s %s: %w", req.Method, redact(req), err) // connection errors: transient
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, n.maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", req.Method, redact(req), err)
	}
	env.CountRead(int64(len(data)))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return statusError(req, resp, data)
	}
	if int64(len(data)) > n.maxResponse {
		return nodes.Permanent(fmt.Errorf("%s %s: answer larger than max_response (%d bytes)", req.Method, redact(req), n.maxResponse))
	}
	ctype := resp.Header.Get("Content-Type")
	result := map[string]any{"status": float64(resp.StatusCode), "content_type": ctype, "size": float64(len(data))}
	switch n.response {
	case "json":
		if len(bytes.TrimSpace(data)) == 0 {
			break
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nodes.Permanent(fmt.Errorf("%s %s: answer is not JSON (%s): %w", req.Method, redact(req), ctype, err))
		}
		env.Payload = v
		result["payload"] = v
	case "body":
		env.SetBody(data, ctype)
	}
	env.SetResult(result)
	return nil
}

func (n *Call) request(ctx context.Context, env *nodes.Envelope) (*http.Request, error) {
	vars := env.Vars()
	method, err := n.method.Render(vars)
	if err != nil {
		return nil, nodes.Permanent(fmt.Errorf("method: %w", err))
	}
	method = strings.ToUpper(strings.TrimSpace(method))
	url, err := n.url.Render(vars)
	if err != nil {
		return nil, nodes.Permanent(fmt.Errorf("url: %w", err))
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, nodes.Permanent(fmt.Errorf("url %q: want an http:// or https:// URL", url))
	}
	var body []byte
	ctype := n.contentType
	mode := n.body
	if !n.bodySet && n.json == nil && (method == http.MethodGet || method == http.MethodHead) {
		mode = "none"
	}
	switch {
	case n.json != nil:
		v, err := n.json.Eval(vars)
		if err != nil {
			return nil, nodes.Permanent(fmt.Errorf("json: %w", err))
		}
		if body, err = json.Marshal(v); err != nil {
			return nil, nodes.Permanent(fmt.Errorf("json: %w", err))
		}
		ctype = cmp.Or(ctype, "application/json")
	case mode == "payload":
		if body, err = env.PayloadJSON(); err != nil {
			return nil, nodes.Permanent(err)
		}
		ctype = cmp.Or(ctype, "application/json")
	case mode == "body":
		if body, err = env.Body(ctx); err != nil {
			return nil, err
		}
		ctype = cmp.Or(ctype, env.BodyType(), "application/octet-stream")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nodes.Permanent(fmt.Errorf("request: %w", err))
	}
	if mode == "none" && n.json == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	} else if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("User-Agent", "sluice")
	for _, h := range n.headers {
		v, err := h.Value.(*eval.Template).Render(vars)
		if err != nil {
			return nil, nodes.Permanent(fmt.Errorf("header %s: %w", h.Key, err))
		}
		req.Header.Set(h.Key, v)
	}
	for _, h := range n.secretHeaders {
		v := os.Getenv(h.Value.(string))
		if v == "" {
			return nil, nodes.Permanent(fmt.Errorf("header %s: environment variable %s is empty", h.Key, h.Value))
		}
		req.Header.Set(h.Key, v)
	}
	propagateTrace(ctx, env, req.Header)
	if n.idempotency && req.Header.Get("Idempotency-Key") == "" {
		req.Header.Set("Idempotency-Key", IdempotencyKey(env.Event.ID, env.Flow, env.StepID()))
	}
	if n.hmacEnv != "" {
		secret := os.Getenv(n.hmacEnv)
		if secret == "" {
			return nil, nodes.Permanent(fmt.Errorf("hmac_secret_env: environment variable %s is empty", n.hmacEnv))
		}
		req.Header.Set(n.hmacHeader, Sign([]byte(secret), body))
	}
	return req, nil
}

// IdempotencyKey is the Idempotency-Key http.call sends for an input
// message id, flow and step: a name-based UUID, the same on every attempt
// and redelivery of that input, different for another step or flow.
func IdempotencyKey(inputID, flow, step string) string {
	return uuid.NewSHA1(idempotencyNS, []byte(flow+"\x00"+step+"\x00"+inputID)).String()
}

// Sign returns the signature header value http.call sends and Sluice's
// HTTP trigger verifies: "sha256=" and the hex HMAC-SHA256 of body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// statusError maps a non-2xx answer onto Sluice's retries: 4xx but 408
// and 429 are permanent; the rest transient, with Retry-After kept.
func statusError(req *http.Request, resp *http.Response, data []byte) error {
	snippet := strings.TrimSpace(string(data))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && !strings.HasPrefix(mt, "text/") && mt != "application/json" && mt != "application/problem+json" {
		snippet = fmt.Sprintf("%d bytes of %s", len(data), mt)
	}
	err := &StatusError{Method: req.Method, URL: redact(req), Status: resp.StatusCode, Body: snippet}
	code := resp.StatusCode
	if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
		return nodes.Permanent(err)
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return nodes.RetryAfter(err, d)
	}
	return err
}

// StatusError is an answer outside 2xx.
type StatusError struct {
	Method, URL string
	Status      int
	Body        string // the start of the answer, for the run record
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// parseRetryAfter reads a Retry-After value: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second, s >= 0
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// redact is the request URL without user info or query (which may hold
// secrets), for error messages and logs.
func redact(req *http.Request) string {
	u := *req.URL
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

var (
	_ nodes.Node    = (*Call)(nil)
	_ nodes.Starter = (*Call)(nil)
	_ nodes.Closer  = (*Call)(nil)
)

// propagateTrace sends the W3C trace context on (traceparent, tracestate),
// unless the flow set a traceparent header itself: the step's span when
// the run is traced, else the context the run received and passes on.
func propagateTrace(ctx context.Context, env *nodes.Envelope, h http.Header) {
	if h.Get("traceparent") != "" {
		return
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
		return
	}
	if tp := env.Meta["traceparent"]; tp != "" {
		h.Set("traceparent", tp)
		if ts := env.Meta["tracestate"]; ts != "" {
			h.Set("tracestate", ts)
		}
	}
}
