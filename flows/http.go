package flows

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/time/rate"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

// HTTPHandler serves the routes of the engine's HTTP-triggered flows (sync
// mode: the run's result is the response). It answers 503 until the engine
// is running and while it drains. Mount it on the listener's "/".
func (e *Engine) HTTPHandler() http.Handler { return e.httpMux }

// HasHTTP reports whether any flow has an HTTP trigger.
func (e *Engine) HasHTTP() bool {
	for _, f := range e.flows {
		if f.Trigger.Kind == TriggerHTTP {
			return true
		}
	}
	return false
}

func (e *Engine) buildHTTP() {
	mux := http.NewServeMux()
	for _, f := range e.flows {
		if f.Trigger.Kind != TriggerHTTP {
			continue
		}
		h := withCORS(f, limit(f, e.httpFlow(f)))
		for _, m := range f.Trigger.HTTPMethods {
			mux.Handle(m+" "+f.Trigger.HTTPPath, h)
		}
		if len(f.Trigger.HTTPCORSOrigins) > 0 && !slices.Contains(f.Trigger.HTTPMethods, http.MethodOptions) {
			mux.Handle(http.MethodOptions+" "+f.Trigger.HTTPPath, h) // preflight
		}
	}
	mux.Handle("GET /runs/{id}", e.serveRunStatus(false))
	mux.Handle("GET /runs/{id}/result", e.serveRunStatus(true))
	// Unknown paths get ServeMux's 404, known paths with another method
	// its 405 with an Allow header.
	e.httpMux = mux
}

// limit enforces a route's rate and concurrency limits: 429 with
// Retry-After beyond them.
func limit(f *Flow, next http.Handler) http.Handler {
	var lim *rate.Limiter
	if f.Trigger.HTTPRate > 0 {
		lim = rate.NewLimiter(rate.Limit(f.Trigger.HTTPRate), max(f.Trigger.HTTPBurst, 1))
	}
	var slots chan struct{}
	if f.Trigger.HTTPMaxConcurrent > 0 {
		slots = make(chan struct{}, f.Trigger.HTTPMaxConcurrent)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lim != nil {
			res := lim.Reserve()
			if d := res.Delay(); d > 0 {
				res.Cancel()
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
				httpError(w, http.StatusTooManyRequests, "rate limit exceeded", "")
				return
			}
		}
		if slots != nil {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			default:
				w.Header().Set("Retry-After", "1")
				httpError(w, http.StatusTooManyRequests, "too many requests in progress on this route", "")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// apiKeys reads the accepted keys from the flow's environment variable,
// at each request, so rotating keys needs no restart.
func apiKeys(f *Flow) []string {
	var keys []string
	for _, k := range strings.Split(os.Getenv(f.Trigger.HTTPKeysEnv), ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func authorized(f *Flow, r *http.Request) bool {
	if f.Trigger.HTTPKeysEnv == "" {
		return true
	}
	got := r.Header.Get(f.Trigger.HTTPKeyHeader)
	ok := false
	for _, k := range apiKeys(f) {
		// Compare every key in constant time: no early exit to time.
		if subtle.ConstantTimeCompare([]byte(got), []byte(k)) == 1 {
			ok = true
		}
	}
	return ok && got != ""
}

func (e *Engine) httpFlow(f *Flow) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-e.ready:
		default:
			w.Header().Set("Retry-After", "1")
			httpError(w, http.StatusServiceUnavailable, "starting", "")
			return
		}
		e.mu.Lock()
		if e.draining {
			e.mu.Unlock()
			w.Header().Set("Retry-After", "5")
			httpError(w, http.StatusServiceUnavailable, "shutting down", "")
			return
		}
		e.inflight.Add(1)
		e.mu.Unlock()
		defer e.inflight.Done()
		if !authorized(f, r) {
			w.Header().Set("WWW-Authenticate", `ApiKey header="`+f.Trigger.HTTPKeyHeader+`"`)
			httpError(w, http.StatusUnauthorized, "missing or wrong API key in "+f.Trigger.HTTPKeyHeader, "")
			return
		}
		claims, err := checkJWT(f, r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			httpError(w, http.StatusUnauthorized, "bearer token refused: "+err.Error(), "")
			return
		}
		r = withClaims(r, claims)
		if f.Trigger.HTTPMode == "sync" {
			e.serveRun(f, w, r)
		} else {
			e.enqueue(f, w, r)
		}
	}
}

// Metadata of a queued HTTP request.
const (
	metaHTTPRequest = "sluice_http_request" // requestVars as JSON
	metaContentType = "content_type"
)

// enqueue queues the request on the flow's topic (async and auto modes):
// durable once published, run by whichever sluice process consumes it.
// async answers 202 at once; auto waits up to the flow's wait for the
// result, then answers 202.
func (e *Engine) enqueue(f *Flow, w http.ResponseWriter, r *http.Request) {
	body, _, ok := readBody(f, w, r)
	if !ok {
		return
	}
	id := watermill.NewULID()
	vars := requestVars(f, r)
	if boundary, ok := isMultipart(r.Header.Get("Content-Type")); ok {
		// Files are stored now; the queued message carries their names.
		form, files, ok := e.uploads(w, r, f, id, boundary, body)
		if !ok {
			return
		}
		vars["files"], vars["form"] = uploadVars(files), form
		body = nil
	}
	reqVars, _ := json.Marshal(vars)
	msg := message.NewMessage(id, body)
	msg.Metadata.Set(metaHTTPRequest, string(reqVars))
	msg.Metadata.Set(metaContentType, r.Header.Get("Content-Type"))
	var done chan nodes.Response
	if f.Trigger.HTTPMode == "auto" {
		done = make(chan nodes.Response, 1)
		e.waitMu.Lock()
		e.waiters[id] = done
		e.waitMu.Unlock()
		defer func() {
			e.waitMu.Lock()
			delete(e.waiters, id)
			e.waitMu.Unlock()
		}()
	}
	e.record(state.Run{ID: id, Flow: f.Name, Trigger: f.triggerLabel, Input: id, Attempts: 1, Status: state.StatusAccepted,
		Started: time.Now().UTC(), BytesIn: int64(len(body))})
	if err := e.opts.Broker.Publisher().Publish(triggerTopic(f), msg); err != nil {
		e.log.Error("queueing an http request failed", "flow", f.Name, "error", err)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "cannot queue the request now; retry later", "")
		return
	}
	if done != nil {
		t := time.NewTimer(f.Trigger.HTTPWait)
		defer t.Stop()
		select {
		case res := <-done:
			w.Header().Set("X-Sluice-Run", id)
			writeResponse(w, res)
			return
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	status := "/runs/" + id
	w.Header().Set("Location", status)
	w.Header().Set("X-Sluice-Run", id)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"run": id, "status": "accepted", "status_url": status, "result_url": status + "/result"})
}

// httpEnvelope fills env from a queued HTTP request.
func httpEnvelope(env *nodes.Envelope, msg *message.Message) error {
	var req map[string]any
	if err := json.Unmarshal([]byte(msg.Metadata.Get(metaHTTPRequest)), &req); err != nil {
		return fmt.Errorf("queued http request without its request: %w", err)
	}
	env.Request = req
	if files, ok := req["files"].([]any); ok {
		// A multipart request: its files are in the uploads bucket.
		env.Payload = req["form"]
		delete(req, "form")
		if len(files) > 0 {
			if o, ok := files[0].(map[string]any); ok {
				size, _ := o["size"].(float64)
				env.SetObject(storage.ObjectInfo{Bucket: fmt.Sprint(o["bucket"]), Key: fmt.Sprint(o["key"]), Size: int64(size),
					ETag: fmt.Sprint(o["etag"]), ContentType: fmt.Sprint(o["content_type"])})
			}
		}
		return nil
	}
	ctype := msg.Metadata.Get(metaContentType)
	p, err := parseJSONBody(msg.Payload, ctype)
	if err != nil {
		return err
	}
	env.Payload = p
	env.SetBody(msg.Payload, ctype)
	return nil
}

// answer stores a queued HTTP run's response with its run record and
// hands it to the request waiting for it here, if any (auto mode).
func (e *Engine) answer(run *state.Run, res nodes.Response) {
	run.HTTPStatus, run.Response, run.ResponseType = res.Status, res.Body, res.ContentType
	if len(res.Body) > MaxKeptResult {
		// Kept instead: why the result is not there, served as 410 Gone.
		run.Response, _ = json.Marshal(map[string]any{
			"error": fmt.Sprintf("the result (%d bytes) was over the %d bytes kept for /runs/%s/result; "+
				"write large results to a bucket (storage.put) and answer with their key", len(res.Body), MaxKeptResult, run.ID),
			"status": res.Status, "bytes": len(res.Body),
		})
		run.ResponseType = resultNotKept
	}
	e.waitMu.Lock()
	ch := e.waiters[run.ID]
	e.waitMu.Unlock()
	if ch != nil {
		select {
		case ch <- res:
		default:
		}
	}
}

// MaxKeptResult bounds the answer of an async or auto run that is kept in
// the run ledger for GET /runs/{id}/result (1 MiB); a larger one is
// answered there with 410 Gone and the reason. An auto request still
// waiting for its run gets the whole answer.
const MaxKeptResult = 1 << 20

// resultNotKept marks a kept result that is the reason the real one was
// not kept.
const resultNotKept = "application/vnd.sluice.result-not-kept+json"

// serveRunStatus answers GET /runs/{id}: the run's status, and with
// /result its stored answer.
func (e *Engine) serveRunStatus(result bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if e.opts.State == nil {
			httpError(w, http.StatusNotFound, "runs are not recorded", "")
			return
		}
		runs, err := e.opts.State.Runs(r.Context(), state.Filter{ID: id, Limit: 1})
		if err != nil {
			httpError(w, http.StatusServiceUnavailable, "cannot read the run ledger now", id)
			return
		}
		if len(runs) == 0 {
			httpError(w, http.StatusNotFound, "no such run", id)
			return
		}
		rn := runs[0]
		if result {
			if status, ctype, body, ok, err := e.opts.State.RunResponse(r.Context(), id); err == nil && ok {
				if ctype == resultNotKept {
					status, ctype = http.StatusGone, "application/json"
				}
				writeResponse(w, nodes.Response{Status: status, ContentType: ctype, Body: body})
				return
			}
			w.Header().Set("Retry-After", "1")
			httpError(w, http.StatusNotFound, "no result yet: the run is "+rn.Status, id)
			return
		}
		out := map[string]any{"run": rn.ID, "flow": rn.Flow, "status": rn.Status, "started": rn.Started}
		if rn.Status != state.StatusAccepted {
			out["duration_ms"] = float64(rn.Duration.Microseconds()) / 1000
			out["http_status"] = rn.HTTPStatus
			out["result_url"] = "/runs/" + id + "/result"
		}
		if rn.Error != "" && rn.HTTPStatus == http.StatusUnprocessableEntity {
			out["error"] = rn.Error
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

// readBody reads the request body within the flow's limit and parses it
// when its content type is JSON; on a bad body it answers and returns
// false.
func readBody(f *Flow, w http.ResponseWriter, r *http.Request) (body []byte, payload any, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the limit of %d bytes", f.MaxBody), "")
		return nil, nil, false
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading the request body: "+err.Error(), "")
		return nil, nil, false
	}
	if err := checkHMAC(f, r, body); err != nil {
		httpError(w, http.StatusUnauthorized, "signature refused: "+err.Error(), "")
		return nil, nil, false
	}
	payload, err = parseJSONBody(body, r.Header.Get("Content-Type"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error(), "")
		return nil, nil, false
	}
	return body, payload, true
}

// parseJSONBody parses body when ctype says JSON; otherwise the payload
// is nil and the bytes are the message body.
func parseJSONBody(body []byte, ctype string) (any, error) {
	mt, _, _ := mime.ParseMediaType(ctype)
	if len(body) == 0 || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, nil
	}
	var p any
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("request body is not valid JSON: %w", err)
	}
	return p, nil
}

func (e *Engine) serveRun(f *Flow, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	fm := e.fm[f]
	fm.received.Inc()
	body, payload, ok := readBody(f, w, r)
	if !ok {
		return
	}
	env := nodes.NewEnvelope(e.opts.Store, f.MaxBody)
	env.Flow, env.Run = f.Name, watermill.NewULID()
	env.Event = nodes.Event{ID: env.Run, Name: r.Method, Topic: "http:" + f.Trigger.HTTPPath, Time: start.UTC()}
	env.Request = requestVars(f, r)
	env.Payload = payload
	if boundary, ok := isMultipart(r.Header.Get("Content-Type")); ok {
		form, files, ok := e.uploads(w, r, f, env.Run, boundary, body)
		if !ok {
			return
		}
		env.Payload, env.Request["files"] = form, uploadVars(files)
		if len(files) > 0 {
			env.SetObject(files[0])
		}
	} else {
		env.SetBody(body, r.Header.Get("Content-Type"))
	}
	run := state.Run{ID: env.Run, Flow: f.Name, Trigger: f.triggerLabel, Input: r.Method + " " + r.URL.RequestURI(), Attempts: 1,
		Started: start.UTC(), Steps: make([]state.StepRun, 0, len(f.Steps)), BytesIn: int64(len(body))}

	ctx, cancel := context.WithTimeout(r.Context(), f.Timeout)
	defer cancel()
	fail, _ := e.runSteps(ctx, f, f.Steps, env, &run)
	if fail == nil {
		if err := e.publishOutputs(f, env.Run, env); err != nil {
			fail = &failure{attempts: 1, err: fmt.Errorf("publish outputs: %w", err)}
		}
	}
	run.Duration = time.Since(start)
	fm.runLatency.Observe(run.Duration.Seconds())
	if fail == nil {
		var res nodes.Response
		res, fail = responseOf(env)
		if fail == nil {
			w.Header().Set("X-Sluice-Run", env.Run)
			writeResponse(w, res)
			run.Status, run.HTTPStatus, run.BytesOut = state.StatusSucceeded, res.Status, int64(len(res.Body))
			e.record(run)
			fm.runs[run.Status].Inc()
			return
		}
	}
	run.Status, run.Error = state.StatusFailed, fail.err.Error()
	if fail.step != nil {
		run.Step = fail.step.ID
	}
	run.Attempts = max(fail.attempts, 1)
	if ctx.Err() == context.DeadlineExceeded && !errors.Is(fail.err, context.DeadlineExceeded) {
		fail.err = fmt.Errorf("%w (%v)", ctx.Err(), fail.err)
	}
	res := errorResponse(fail, f.Timeout, env.Run)
	run.HTTPStatus = res.Status
	if res.Status == http.StatusServiceUnavailable {
		// Transient (storage down, retries spent): details stay in the
		// run ledger, not in the answer.
		w.Header().Set("Retry-After", "5")
	}
	writeResponse(w, res)
	e.log.Warn("http run failed", "flow", f.Name, "run", env.Run, "status", run.HTTPStatus, "step", run.Step, "error", fail.err)
	e.record(run)
	fm.runs[run.Status].Inc()
}

// responseOf is a successful run's answer: what a respond step set, else
// 200 with the payload as JSON.
func responseOf(env *nodes.Envelope) (nodes.Response, *failure) {
	if res, ok := env.Response(); ok {
		return res, nil
	}
	b, err := env.PayloadJSON()
	if err != nil {
		return nodes.Response{}, &failure{attempts: 1, err: nodes.Permanent(err)}
	}
	return nodes.Response{Status: http.StatusOK, ContentType: "application/json", Body: b}, nil
}

// errorResponse is a failed run's answer, and the status it records.
func errorResponse(fail *failure, timeout time.Duration, run string) nodes.Response {
	status, msg := http.StatusServiceUnavailable, "temporarily unavailable; retry later"
	switch {
	case errors.Is(fail.err, context.DeadlineExceeded):
		status, msg = http.StatusGatewayTimeout, fmt.Sprintf("the flow did not finish within %s", timeout)
	case nodes.IsPermanent(fail.err):
		// A permanent error is about the request: its reason is the answer.
		status, msg = http.StatusUnprocessableEntity, fail.err.Error()
	}
	b, _ := json.Marshal(map[string]string{"error": msg, "run": run})
	return nodes.Response{Status: status, ContentType: "application/json", Body: append(b, '\n')}
}

// requestVars is the request as expressions see it (request.params.id…).
func requestVars(f *Flow, r *http.Request) map[string]any {
	params := map[string]any{}
	for _, seg := range strings.Split(f.Trigger.HTTPPath, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(strings.TrimSuffix(seg[1:len(seg)-1], "..."), "$")
			if name != "" {
				params[name] = r.PathValue(name)
			}
		}
	}
	query := map[string]any{}
	for k, v := range r.URL.Query() {
		if len(v) == 1 {
			query[k] = v[0]
		} else {
			query[k] = v
		}
	}
	headers := map[string]any{}
	for _, h := range f.Trigger.HTTPHeaders {
		if v := r.Header.Get(h); v != "" {
			headers[strings.ToLower(h)] = v
		}
	}
	vars := map[string]any{"method": r.Method, "path": r.URL.Path, "params": params, "query": query, "headers": headers}
	if c, ok := r.Context().Value(claimsKey{}).(map[string]any); ok {
		vars["claims"] = c
	}
	return vars
}

func writeResponse(w http.ResponseWriter, res nodes.Response) {
	for k, v := range res.Headers {
		w.Header().Set(k, v)
	}
	if res.ContentType != "" {
		w.Header().Set("Content-Type", res.ContentType)
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
}

// httpError answers a JSON error: {"error": ..., "run": ...}.
func httpError(w http.ResponseWriter, status int, msg, run string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	body := map[string]string{"error": msg}
	if run != "" {
		body["run"] = run
	}
	_ = json.NewEncoder(w).Encode(body)
}
