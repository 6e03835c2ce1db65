package flows

import (
	"encoding/json"
	"net/http"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// The runs API: GET /runs/{id} and /runs/{id}/result, for the runs of
// async and auto HTTP routes. {id} is the request's id (the one the 202
// answer gave) or a run's own id. A run is shown only to callers holding
// the credentials of the route that made it (401 otherwise); the id of a
// run no HTTP route of this engine made gets 404.

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
		rn, found, err := e.findHTTPRun(r, id)
		if err != nil {
			httpError(w, http.StatusServiceUnavailable, "cannot read the run ledger now", id)
			return
		}
		run := e.runnerOf(rn.Flow)
		if !found || run == nil || run.f.Trigger.HTTP == nil {
			httpError(w, http.StatusNotFound, "no such run", id)
			return
		}
		// The route's own credentials, as on the route itself.
		if _, ok := authenticate(run.f.Trigger.HTTP, w, r); !ok {
			return
		}
		if result {
			if status, ctype, body, ok, err := e.opts.State.RunResponse(r.Context(), rn.ID); err == nil && ok {
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
		out := map[string]any{"run": id, "flow": rn.Flow, "status": rn.Status, "started": rn.Started}
		if rn.ID != id {
			out["run_id"] = rn.ID
		}
		if rn.Status != state.StatusAccepted {
			out["duration_ms"] = float64(rn.Duration.Microseconds()) / 1000
			out["http_status"] = rn.HTTPStatus
			out["result_url"] = "/runs/" + id + "/result"
		}
		if rn.TraceID != "" {
			out["trace_id"] = rn.TraceID // to find the run in the caller's tracing backend
		}
		if rn.Error != "" && rn.HTTPStatus == http.StatusUnprocessableEntity {
			out["error"] = rn.Error
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

// findHTTPRun finds the run a request id or run id names: the run that
// finished the request when there is one, else its accepted record.
func (e *Engine) findHTTPRun(r *http.Request, id string) (state.Run, bool, error) {
	runs, err := e.opts.State.Runs(r.Context(), state.Filter{Input: id, Limit: 20})
	if err != nil {
		return state.Run{}, false, err
	}
	var accepted *state.Run
	for i, rn := range runs {
		switch rn.Status {
		case state.StatusAccepted:
			accepted = &runs[i]
		case state.StatusDuplicate:
		default:
			return rn, true, nil
		}
	}
	if accepted != nil {
		return *accepted, true, nil
	}
	runs, err = e.opts.State.Runs(r.Context(), state.Filter{ID: id, Limit: 1})
	if err != nil || len(runs) == 0 {
		return state.Run{}, false, err
	}
	return runs[0], true, nil
}
