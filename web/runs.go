package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/state"
)

// runQuery is the runs page's filter form, as given.
type runQuery struct {
	Flow, Status, Since, Until, Input, Error string
}

// runStatuses are the statuses the filter offers.
var runStatuses = []string{state.StatusSucceeded, state.StatusDeadLettered, state.StatusFailed, state.StatusDuplicate, state.StatusAccepted}

// runFilter reads the filter from a query string; problems name the field.
func runFilter(q url.Values, now time.Time) (runQuery, state.Filter, []string) {
	rq := runQuery{Flow: q.Get("flow"), Status: q.Get("status"), Since: q.Get("since"), Until: q.Get("until"),
		Input: strings.TrimSpace(q.Get("input")), Error: q.Get("error")}
	f := state.Filter{Flow: rq.Flow, Status: rq.Status, Input: rq.Input, Error: rq.Error, Limit: 100}
	var probs []string
	var err error
	if f.Since, err = parseWhen(rq.Since, now); err != nil {
		probs = append(probs, "since: "+err.Error())
	}
	if f.Until, err = parseWhen(rq.Until, now); err != nil {
		probs = append(probs, "until: "+err.Error())
	}
	return rq, f, probs
}

// parseWhen reads a time: a duration ago ("24h", "90m") or a UTC date and
// time ("2026-11-29T18:00", "2026-11-29 18:00:05", RFC 3339); "" is zero.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration ago (24h) nor a UTC time (2026-11-29T18:00)", s)
}

type runsData struct {
	Query    runQuery
	Flows    []string
	Statuses []string
	Problems []string
	Runs     []state.Run
	Older    string // the query of the next (older) page, when there may be one
}

func (s *Server) flowNames() []string {
	var names []string
	for _, v := range s.opts.Engine.Flows() {
		names = append(names, v.Name)
	}
	return names
}

func (s *Server) runsPage(w http.ResponseWriter, r *http.Request, p *page) {
	if s.noState(w, r, p) {
		return
	}
	q, f, probs := runFilter(r.URL.Query(), time.Now())
	d := runsData{Query: q, Flows: s.flowNames(), Statuses: runStatuses, Problems: probs}
	if len(probs) == 0 {
		runs, err := s.opts.State.Runs(r.Context(), f)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		d.Runs = runs
		if len(runs) == f.Limit {
			older := r.URL.Query()
			older.Set("until", runs[len(runs)-1].Started.Format(time.RFC3339Nano))
			d.Older = older.Encode()
		}
	} else {
		w.WriteHeader(http.StatusBadRequest)
	}
	p.Title, p.Nav, p.Data = "Runs", "runs", d
	s.render(w, r, "runs", p)
}

// runDetail is the run page.
type runDetail struct {
	Run state.Run
	// Children are the runs of the inputs this run made (lineage: the
	// messages it published, the objects it wrote), oldest first.
	Children   []state.Run
	DeadLetter *state.DeadLetter // the dead letter the run made, if any
	ReplayOf   *state.DeadLetter // the dead letter it replayed, if any
	Object     string            // the input object (bucket/key) of a bucket run
	// Links says objects can be downloaded (/ui/objects/BUCKET/KEY).
	Links bool
	Steps []stepRow
}

// stepRow is a step of the run's timeline: where its bar starts and how
// wide it is, in percent of the run (steps run one after another).
type stepRow struct {
	state.StepRun
	Start, Width string
}

func timeline(r state.Run) []stepRow {
	var total time.Duration
	for _, st := range r.Steps {
		total += st.Duration
	}
	total = max(total, r.Duration)
	rows := make([]stepRow, 0, len(r.Steps))
	var at time.Duration
	for _, st := range r.Steps {
		rows = append(rows, stepRow{StepRun: st, Start: percentOf(at, total), Width: percentOf(max(st.Duration, total/200), total)})
		at += st.Duration
	}
	return rows
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request, p *page) {
	if s.noState(w, r, p) {
		return
	}
	id := r.PathValue("id")
	runs, err := s.opts.State.Runs(r.Context(), state.Filter{ID: id, Limit: 1})
	run, ok := one(s, w, r, p, runs, err, "No run "+id+" is recorded (it may have been pruned by retention).")
	if !ok {
		return
	}
	d := runDetail{Run: run, Links: s.opts.Store != nil}
	d.Steps = timeline(d.Run)
	if strings.HasPrefix(d.Run.Trigger, "bucket:") {
		d.Object, _, _ = strings.Cut(d.Run.Input, "@")
	}
	ctx := r.Context()
	if d.Run.Status == state.StatusDeadLettered {
		if dls, err := s.opts.State.DeadLetters(ctx, state.DeadLetterFilter{Flow: d.Run.Flow, SourceID: d.Run.Input, Replayed: true, Limit: 1}); err == nil && len(dls) > 0 {
			d.DeadLetter = &dls[0]
		}
	}
	if dls, err := s.opts.State.DeadLetters(ctx, state.DeadLetterFilter{ReplayID: d.Run.Input, Replayed: true, Limit: 1}); err == nil && len(dls) > 0 {
		d.ReplayOf = &dls[0]
	}
	if kids, err := s.opts.State.Runs(ctx, state.Filter{Parent: d.Run.ID, Limit: 50}); err == nil {
		d.Children = kids
	}
	p.Title, p.Nav, p.Data = "Run "+d.Run.ID, "runs", d
	s.render(w, r, "run", p)
}
