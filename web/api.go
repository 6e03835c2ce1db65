package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/state"
)

// The JSON API under /ui/api: the dashboard's data for scripts, with the
// admin token as a bearer header (or a dashboard session).

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Server) apiState(w http.ResponseWriter) bool {
	if s.opts.State == nil {
		apiError(w, http.StatusNotFound, "this engine records no runs: it runs without a state database")
		return false
	}
	return true
}

func (s *Server) apiFlows(w http.ResponseWriter, r *http.Request) {
	views := s.opts.Engine.Flows()
	s.opts.Engine.Lag(r.Context(), views)
	writeJSON(w, http.StatusOK, views)
}

func (s *Server) apiRuns(w http.ResponseWriter, r *http.Request) {
	if !s.apiState(w) {
		return
	}
	_, f, probs := runFilter(r.URL.Query(), time.Now())
	if len(probs) > 0 {
		apiError(w, http.StatusBadRequest, probs[0])
		return
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 && n <= 1000 {
		f.Limit = n
	}
	runs, err := s.opts.State.Runs(r.Context(), f)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "cannot read the run ledger now")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": nonNil(runs)})
}

func (s *Server) apiRun(w http.ResponseWriter, r *http.Request) {
	if !s.apiState(w) {
		return
	}
	runs, err := s.opts.State.Runs(r.Context(), state.Filter{ID: r.PathValue("id"), Limit: 1})
	switch {
	case err != nil:
		apiError(w, http.StatusServiceUnavailable, "cannot read the run ledger now")
	case len(runs) == 0:
		apiError(w, http.StatusNotFound, "no run "+r.PathValue("id"))
	default:
		writeJSON(w, http.StatusOK, runs[0])
	}
}

func (s *Server) apiDeadLetters(w http.ResponseWriter, r *http.Request) {
	if !s.apiState(w) {
		return
	}
	q := r.URL.Query()
	f := state.DeadLetterFilter{Flow: q.Get("flow"), Step: q.Get("step"), Error: q.Get("error"), Replayed: q.Get("replayed") == "1"}
	if q.Get("group") == "1" {
		groups, err := s.opts.State.DeadLetterGroups(r.Context(), f)
		if err != nil {
			apiError(w, http.StatusServiceUnavailable, "cannot read dead letters now")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"groups": nonNil(groups)})
		return
	}
	dls, err := s.opts.State.DeadLetters(r.Context(), f)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "cannot read dead letters now")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": nonNil(dls)})
}

func (s *Server) apiDeadLetter(w http.ResponseWriter, r *http.Request) {
	if !s.apiState(w) {
		return
	}
	dls, err := s.opts.State.DeadLetters(r.Context(), state.DeadLetterFilter{IDs: []string{r.PathValue("id")}, Replayed: true, Limit: 1})
	switch {
	case err != nil:
		apiError(w, http.StatusServiceUnavailable, "cannot read dead letters now")
	case len(dls) == 0:
		apiError(w, http.StatusNotFound, "no dead letter "+r.PathValue("id"))
	default:
		writeJSON(w, http.StatusOK, dls[0])
	}
}

// apiSelection is the body of replay and purge: ids, or a flow, step and
// error (exact: the error is a group's whole text).
type apiSelection struct {
	IDs   []string `json:"ids"`
	Flow  string   `json:"flow"`
	Step  string   `json:"step"`
	Error string   `json:"error"`
	Exact bool     `json:"exact"`
}

func readSelection(w http.ResponseWriter, r *http.Request) (selection, bool) {
	var a apiSelection
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&a); err != nil {
		apiError(w, http.StatusBadRequest, "body: want JSON {\"ids\": [...]} or {\"flow\", \"step\", \"error\"}: "+err.Error())
		return selection{}, false
	}
	return selection(a), true
}

// apiReplay starts replaying the selection's pending dead letters and
// answers 202 with the job's id, total and progress page.
func (s *Server) apiReplay(w http.ResponseWriter, r *http.Request) {
	if !s.apiState(w) {
		return
	}
	sel, ok := readSelection(w, r)
	if !ok {
		return
	}
	jb, err := s.startReplay(r.Context(), sel)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"job": jb.ID, "total": jb.total, "progress_url": "/ui/jobs/" + jb.ID})
}

func (s *Server) apiPurge(w http.ResponseWriter, r *http.Request) {
	if !s.apiState(w) {
		return
	}
	sel, ok := readSelection(w, r)
	if !ok {
		return
	}
	n, err := s.purgeSelection(r.Context(), sel)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"purged": n})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
