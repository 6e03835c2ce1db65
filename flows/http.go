package flows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

// HTTP triggers: each flow's routes on the `sluice run` listener. A sync
// route runs the flow in the request; async and auto routes queue the
// request on the flow's input topic (HTTPTopic), where its run is a
// delivery like any other, answered through the httpAdapter.

// HTTPHandler serves the routes of the engine's HTTP-triggered flows and
// the runs API. It answers 503 until the engine is running and while it
// drains. Mount it on the listener's "/". Reload swaps the routes: a
// request is served by the routes current when it arrives.
func (e *Engine) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { e.httpMux.Load().ServeHTTP(w, req) })
}

// HasHTTP reports whether any flow has an HTTP trigger.
func (e *Engine) HasHTTP() bool {
	e.flowsMu.RLock()
	defer e.flowsMu.RUnlock()
	for _, r := range e.runners {
		if r.f.Trigger.Kind == TriggerHTTP {
			return true
		}
	}
	return false
}

// ServesPath reports whether an HTTP-triggered flow serves path now
// (after the last Reload).
func (e *Engine) ServesPath(path string) bool {
	e.flowsMu.RLock()
	defer e.flowsMu.RUnlock()
	for _, r := range e.runners {
		if t := r.f.Trigger.HTTP; t != nil && t.Path == path {
			return true
		}
	}
	return false
}

// buildHTTP builds the routes of e.runners (flowsMu held).
func (e *Engine) buildHTTP() {
	mux := http.NewServeMux()
	for _, r := range e.runners {
		t := r.f.Trigger.HTTP
		if t == nil {
			continue
		}
		h := e.gate(r, withCORS(t, limit(t, http.HandlerFunc(r.serveHTTP))))
		for _, m := range t.Methods {
			mux.Handle(m+" "+t.Path, h)
		}
		if len(t.CORSOrigins) > 0 && !slices.Contains(t.Methods, http.MethodOptions) {
			mux.Handle(http.MethodOptions+" "+t.Path, h) // preflight
		}
	}
	mux.Handle("GET /runs/{id}", e.serveRunStatus(false))
	mux.Handle("GET /runs/{id}/result", e.serveRunStatus(true))
	// Unknown paths get ServeMux's 404, known paths with another method
	// its 405 with an Allow header.
	e.httpMux.Store(mux)
}

// serveHTTP is a route's handler: gate, authenticate, then run (sync) or
// queue (async, auto).
func (r *runner) serveHTTP(w http.ResponseWriter, req *http.Request) {
	select {
	case <-r.e.ready:
	default:
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "starting", "")
		return
	}
	if !r.e.enter() {
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "shutting down", "")
		return
	}
	defer r.e.leave()
	// A client still sending its body when shutdown stops waiting is cut
	// off: it cannot hold the process.
	rc := http.NewResponseController(w)
	defer context.AfterFunc(r.e.hardCtx, func() { _ = rc.SetReadDeadline(time.Now()) })()
	req, ok := authenticate(r.f.Trigger.HTTP, w, req)
	if !ok {
		return
	}
	if r.f.Trigger.HTTP.Mode == "sync" {
		r.serveSync(w, req)
	} else {
		r.enqueue(w, req)
	}
}

// serveSync runs the flow in the request; the run's result is the
// response. It is recorded, not in the completion ledger (nothing is
// redelivered) and never dead-lettered: the caller has the error.
func (r *runner) serveSync(w http.ResponseWriter, req *http.Request) {
	// At most `concurrency` runs at once, bodies included: more wait.
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-req.Context().Done():
		return
	}
	start := time.Now()
	t := r.f.Trigger.HTTP
	r.m.received.Inc()
	body, payload, ok := readBody(r.f, w, req)
	if !ok {
		return
	}
	dl := nodes.NewDelivery(r.e.opts.Store, r.f.MaxBody)
	env := dl.Envelope()
	env.Flow, env.Run = r.f.Name, newRunID(start)
	env.Event = nodes.Event{ID: env.Run, Name: req.Method, Topic: "http:" + t.Path, Time: start.UTC()}
	env.Request = requestVars(t, req)
	env.Payload = payload
	var uploaded []storage.ObjectInfo
	if boundary, ok := isMultipart(req.Header.Get("Content-Type")); ok {
		form, files, ok := r.uploads(w, req, env.Run, boundary, body)
		if !ok {
			return
		}
		env.Payload, env.Request["files"] = form, uploadVars(files)
		if len(files) > 0 {
			env.SetObject(files[0])
		}
		uploaded = files
	} else {
		env.SetBody(body, req.Header.Get("Content-Type"))
	}
	d := r.newDelivery(nil, dl, req.Method+" "+req.URL.RequestURI(), start)
	d.run.BytesIn = int64(len(body))
	if r.tr != nil { // the caller's trace continues
		r.startRun(req.Context(), d, propagation.HeaderCarrier(req.Header), trace.SpanKindServer)
	}

	r.exec(req.Context(), d, r.f.Steps)
	if d.fail == nil {
		if err := r.e.publishOutputs(r, env.Run, nil, dl); err != nil {
			d.fail = &failure{attempts: 1, err: fmt.Errorf("publish outputs: %w", err)}
		}
	}
	r.measure(d)
	if d.fail == nil {
		var res nodes.Response
		if res, d.fail = responseOf(dl); d.fail == nil {
			w.Header().Set("X-Sluice-Run", env.Run)
			writeResponse(w, res)
			d.run.Status, d.run.HTTPStatus = state.StatusSucceeded, res.Status
			d.run.BytesOut += int64(len(res.Body))
			r.record(d)
			return
		}
	}
	fail := d.fail
	d.run.Status, d.run.Error, d.run.Attempts = state.StatusFailed, fail.err.Error(), max(fail.attempts, 1)
	if fail.step != nil {
		d.run.Step = fail.step.ID
	}
	res := errorResponse(fail, r.f.Timeout, env.Run)
	d.run.HTTPStatus = res.Status
	if res.Status == http.StatusServiceUnavailable {
		// Transient (storage down, retries spent): details stay in the
		// run ledger, not in the answer.
		w.Header().Set("Retry-After", "5")
	}
	writeResponse(w, res)
	r.log.Warn("http run failed", "run", env.Run, "status", d.run.HTTPStatus, "step", d.run.Step, "error", fail.err)
	r.record(d)
	if !d.unsafe {
		r.e.removeUploads(uploaded) // the caller has the error; nothing of the request stays
	}
}

// Metadata of a queued HTTP request.
const (
	metaHTTPRequest = "sluice_http_request" // requestVars as JSON
	metaContentType = "content_type"
)

// enqueue queues the request on the flow's topic (async and auto modes):
// durable once published, run by whichever sluice process consumes it.
// The request's id is the message id: its run's input. async answers 202
// at once; auto waits up to the trigger's wait for the result, then
// answers 202.
func (r *runner) enqueue(w http.ResponseWriter, req *http.Request) {
	t := r.f.Trigger.HTTP
	body, _, ok := readBody(r.f, w, req)
	if !ok {
		return
	}
	id := watermill.NewULID()
	vars := requestVars(t, req)
	if boundary, ok := isMultipart(req.Header.Get("Content-Type")); ok {
		// Files are stored now; the queued message carries their names.
		form, files, ok := r.uploads(w, req, id, boundary, body)
		if !ok {
			return
		}
		vars["files"], vars["form"] = uploadVars(files), form
		body = nil
	}
	reqVars, _ := json.Marshal(vars)
	msg := message.NewMessage(id, body)
	msg.Metadata.Set(metaHTTPRequest, string(reqVars))
	msg.Metadata.Set(metaContentType, req.Header.Get("Content-Type"))
	if tp := req.Header.Get(MetaTraceparent); tp != "" {
		// The run continues the caller's trace, wherever it runs.
		msg.Metadata.Set(MetaTraceparent, tp)
		if ts := req.Header.Get(MetaTracestate); ts != "" {
			msg.Metadata.Set(MetaTracestate, ts)
		}
	}
	var done chan nodes.Response
	if t.Mode == "auto" {
		done = r.e.waiters.add(id)
		defer r.e.waiters.remove(id)
	}
	if st := r.e.opts.State; st != nil {
		st.Record(state.Run{ID: id, Flow: r.f.Name, Trigger: r.label, Input: id, Attempts: 1, Status: state.StatusAccepted,
			Started: time.Now().UTC(), BytesIn: int64(len(body))})
		// Written before the id is handed out, so /runs/{id} knows it at once.
		if err := st.Flush(req.Context()); err != nil {
			r.log.Warn("recording an accepted request failed", "error", err)
		}
	}
	if err := r.e.opts.Broker.Publisher().Publish(r.f.InputTopic(), msg); err != nil {
		r.log.Error("queueing an http request failed", "error", err)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "cannot queue the request now; retry later", "")
		return
	}
	if done != nil {
		timer := time.NewTimer(t.Wait)
		defer timer.Stop()
		select {
		case res := <-done:
			w.Header().Set("X-Sluice-Run", id)
			writeResponse(w, res)
			return
		case <-timer.C:
		case <-req.Context().Done():
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

// httpAdapter decodes queued HTTP requests and answers them: the answer
// is kept with the run record for GET /runs/{id}/result and handed to an
// auto request still waiting in this process.
type httpAdapter struct{ r *runner }

func (a *httpAdapter) decode(msg *message.Message, env *nodes.Envelope) (string, bool, error) {
	env.Event.Name = "http"
	var req map[string]any
	if err := json.Unmarshal([]byte(msg.Metadata.Get(metaHTTPRequest)), &req); err != nil {
		return "", false, fmt.Errorf("queued http request without its request: %w", err)
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
		return msg.UUID, false, nil
	}
	ctype := msg.Metadata.Get(metaContentType)
	p, err := parseJSONBody(msg.Payload, ctype)
	if err != nil {
		return "", false, err
	}
	env.Payload = p
	env.SetBody(msg.Payload, ctype)
	return msg.UUID, false, nil
}

func (a *httpAdapter) prepare(d *delivery) {
	res, fail := responseOf(d.dl)
	if fail != nil {
		d.fail = fail
		return
	}
	d.res = &res
}

func (a *httpAdapter) answer(d *delivery) {
	var res nodes.Response
	if d.fail != nil || d.res == nil {
		res = errorResponse(d.fail, a.r.f.Timeout, d.run.Input)
	} else {
		res = *d.res
	}
	d.run.HTTPStatus, d.run.Response, d.run.ResponseType = res.Status, res.Body, res.ContentType
	if len(res.Body) > MaxKeptResult {
		// Kept instead: why the result is not there, served as 410 Gone.
		d.run.Response, _ = json.Marshal(map[string]any{
			"error": fmt.Sprintf("the result (%d bytes) was over the %d bytes kept for /runs/%s/result; "+
				"write large results to a bucket (storage.put) and answer with their key", len(res.Body), MaxKeptResult, d.run.Input),
			"status": res.Status, "bytes": len(res.Body),
		})
		d.run.ResponseType = resultNotKept
	}
	a.r.e.waiters.deliver(d.run.Input, res)
}

// waiters are the auto-mode requests waiting in this process for their
// run's answer, by request id.
type waiters struct {
	mu sync.Mutex
	m  map[string]chan nodes.Response
}

func (w *waiters) add(id string) chan nodes.Response {
	ch := make(chan nodes.Response, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]chan nodes.Response{}
	}
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) remove(id string) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

func (w *waiters) deliver(id string, res nodes.Response) {
	w.mu.Lock()
	ch := w.m[id]
	w.mu.Unlock()
	if ch != nil {
		select {
		case ch <- res:
		default:
		}
	}
}

// readBody reads the request body within the flow's limit and parses it
// when its content type is JSON; on a bad body it answers and returns
// false.
func readBody(f *Flow, w http.ResponseWriter, r *http.Request) (body []byte, payload any, ok bool) {
	limit := f.Trigger.HTTP.MaxBody
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the limit of %d bytes", limit), "")
		return nil, nil, false
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading the request body: "+err.Error(), "")
		return nil, nil, false
	}
	if err := checkHMAC(f.Trigger.HTTP, r, body); err != nil {
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

// responseOf is a successful run's answer: what a respond step set, else
// 200 with the payload as JSON.
func responseOf(dl *nodes.Delivery) (nodes.Response, *failure) {
	if res, ok := dl.Response(); ok {
		return res, nil
	}
	b, err := dl.Envelope().PayloadJSON()
	if err != nil {
		return nodes.Response{}, &failure{attempts: 1, err: nodes.Permanent(err)}
	}
	return nodes.Response{Status: http.StatusOK, ContentType: "application/json", Body: b}, nil
}

// errorResponse is a failed run's answer, and the status it records.
func errorResponse(fail *failure, timeout time.Duration, run string) nodes.Response {
	status, msg := http.StatusServiceUnavailable, "temporarily unavailable; retry later"
	switch {
	case fail == nil:
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
func requestVars(t *HTTPTrigger, r *http.Request) map[string]any {
	params := map[string]any{}
	for _, seg := range strings.Split(t.Path, "/") {
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
	for _, h := range t.Headers {
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
