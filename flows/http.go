package flows

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
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
		h := e.httpFlow(f)
		for _, m := range f.Trigger.HTTPMethods {
			mux.Handle(m+" "+f.Trigger.HTTPPath, h)
		}
	}
	// Unknown paths get ServeMux's 404, known paths with another method
	// its 405 with an Allow header.
	e.httpMux = mux
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
		e.serveRun(f, w, r)
	}
}

func (e *Engine) serveRun(f *Flow, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	fm := e.fm[f]
	fm.received.Inc()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the limit of %d bytes", f.MaxBody), "")
		return
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "reading the request body: "+err.Error(), "")
		return
	}
	env := nodes.NewEnvelope(e.opts.Store, f.MaxBody)
	env.Flow, env.Run = f.Name, watermill.NewULID()
	env.Event = nodes.Event{ID: env.Run, Name: r.Method, Topic: "http:" + f.Trigger.HTTPPath, Time: start.UTC()}
	env.Request = requestVars(f, r)
	ctype := r.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ctype); len(body) > 0 && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		var p any
		if err := json.Unmarshal(body, &p); err != nil {
			httpError(w, http.StatusBadRequest, "request body is not valid JSON: "+err.Error(), env.Run)
			return
		}
		env.Payload = p
	}
	env.SetBody(body, ctype)
	run := state.Run{ID: env.Run, Flow: f.Name, Trigger: f.triggerLabel, Input: r.Method + " " + r.URL.RequestURI(), Attempts: 1,
		Started: start.UTC(), Steps: make([]state.StepRun, 0, len(f.Steps)), BytesIn: int64(len(body))}

	ctx, cancel := context.WithTimeout(r.Context(), f.Timeout)
	defer cancel()
	fail := e.runSteps(ctx, f, f.Steps, env, &run)
	if fail == nil {
		if err := e.publishOutputs(f, env.Run, env); err != nil {
			fail = &failure{attempts: 1, err: fmt.Errorf("publish outputs: %w", err)}
		}
	}
	run.Duration = time.Since(start)
	fm.runLatency.Observe(run.Duration.Seconds())
	if fail == nil {
		res, ok := env.Response()
		if !ok {
			b, err := env.PayloadJSON()
			if err != nil {
				fail = &failure{attempts: 1, err: nodes.Permanent(err)}
			} else {
				res = nodes.Response{Status: http.StatusOK, ContentType: "application/json", Body: b}
			}
		}
		if fail == nil {
			for k, v := range res.Headers {
				w.Header().Set(k, v)
			}
			if res.ContentType != "" {
				w.Header().Set("Content-Type", res.ContentType)
			}
			w.Header().Set("X-Sluice-Run", env.Run)
			w.WriteHeader(res.Status)
			_, _ = w.Write(res.Body)
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
	switch {
	case errors.Is(fail.err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		run.HTTPStatus = http.StatusGatewayTimeout
		httpError(w, run.HTTPStatus, fmt.Sprintf("the flow did not finish within %s", f.Timeout), env.Run)
	case nodes.IsPermanent(fail.err):
		// A permanent error is about the request: its reason is the answer.
		run.HTTPStatus = http.StatusUnprocessableEntity
		httpError(w, run.HTTPStatus, fail.err.Error(), env.Run)
	default:
		// Transient (storage down, retries spent): details stay in the
		// run ledger, not in the answer.
		run.HTTPStatus = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
		httpError(w, run.HTTPStatus, "temporarily unavailable; retry later", env.Run)
	}
	e.log.Warn("http run failed", "flow", f.Name, "run", env.Run, "status", run.HTTPStatus, "step", run.Step, "error", fail.err)
	e.record(run)
	fm.runs[run.Status].Inc()
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
	return map[string]any{"method": r.Method, "path": r.URL.Path, "params": params, "query": query, "headers": headers}
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
