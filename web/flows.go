package web

import (
	"context"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/state"
)

// flowRow is one flow of the overview, with its recent rate and health.
type flowRow struct {
	flows.FlowView
	Rate       float64 // runs per second over the last minute (or since the first look)
	ErrorRate  string  // errors among recent runs, else among all since start
	DLQ        int64   // dead letters waiting
	Health     string  // ok, idle, degraded, failing
	HealthNote string
}

// rates keeps a minute of samples of each flow's run and error counts, so
// the overview shows recent rates without any background work.
type rates struct {
	mu      sync.Mutex
	samples map[string][]sample
}

type sample struct {
	at           time.Time
	runs, errors int64
}

const rateWindow = time.Minute

// observe records the flow's counts now and returns the run rate and the
// runs and errors within the window (ok false before a second sample).
func (r *rates) observe(flow string, now time.Time, runs, errs int64) (rate float64, dRuns, dErrs int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples == nil {
		r.samples = map[string][]sample{}
	}
	ss := r.samples[flow]
	if len(ss) > 0 && ss[len(ss)-1].runs > runs {
		ss = nil // counters restarted (the flow was reloaded)
	}
	if len(ss) == 0 || now.Sub(ss[len(ss)-1].at) >= time.Second {
		ss = append(ss, sample{now, runs, errs})
	}
	for len(ss) > 2 && now.Sub(ss[1].at) > rateWindow {
		ss = ss[1:]
	}
	r.samples[flow] = ss
	first := ss[0]
	dt := now.Sub(first.at).Seconds()
	if dt < 0.5 {
		return 0, 0, 0, false
	}
	return float64(runs-first.runs) / dt, runs - first.runs, errs - first.errors, true
}

// flowRows is the overview's rows.
func (s *Server) flowRows(ctx context.Context) []flowRow {
	views := s.opts.Engine.Flows()
	s.opts.Engine.Lag(ctx, views)
	depth := map[string]int64{}
	if s.opts.State != nil {
		if groups, err := s.opts.State.DeadLetterGroups(ctx, state.DeadLetterFilter{Limit: 10000}); err == nil {
			for _, g := range groups {
				depth[g.Flow] += g.Count
			}
		}
	}
	now := time.Now()
	rows := make([]flowRow, 0, len(views))
	for _, v := range views {
		row := flowRow{FlowView: v, DLQ: depth[v.Name]}
		rate, dRuns, dErrs, ok := s.rates.observe(v.Name, now, v.Stats.Runs(), v.Stats.Errors())
		row.Rate = rate
		recentRuns, recentErrs := v.Stats.Runs(), v.Stats.Errors()
		if ok && dRuns > 0 {
			recentRuns, recentErrs = dRuns, dErrs
		}
		row.ErrorRate = pct(recentErrs, recentRuns)
		switch {
		case recentRuns > 0 && recentErrs*2 >= recentRuns:
			row.Health, row.HealthNote = "failing", "most recent runs fail"
		case recentErrs > 0 || row.DLQ > 0:
			row.Health, row.HealthNote = "degraded", "some runs fail or dead letters wait"
		case v.Stats.Runs() == 0:
			row.Health, row.HealthNote = "idle", "no runs since the start"
		default:
			row.Health, row.HealthNote = "ok", "runs succeed"
		}
		rows = append(rows, row)
	}
	return rows
}

func (s *Server) flowsPage(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title, p.Nav, p.Data = "Flows", "flows", s.flowRows(r.Context())
	s.render(w, r, "flows", p)
}

// flowsLive is the overview's table alone, polled by htmx.
func (s *Server) flowsLive(w http.ResponseWriter, r *http.Request, p *page) {
	p.Data = s.flowRows(r.Context())
	s.renderFragment(w, r, "flows", "flowtable", p)
}

// flowDetail is the flow page: the graph's data and the YAML.
type flowDetail struct {
	Flow  flowRow
	Chain []graphStep // the main steps, branches under the steps that route to them
	// Unrouted are branches no step names (drawn after the chain).
	Unrouted []graphBranch
	YAML     string
	YAMLErr  string
}

func (s *Server) detail(ctx context.Context, name string) (flowDetail, bool) {
	v, ok := s.opts.Engine.Flow(name)
	if !ok {
		return flowDetail{}, false
	}
	var row flowRow
	for _, fr := range s.flowRows(ctx) {
		if fr.Name == name {
			row = fr
		}
	}
	if row.Name == "" {
		row = flowRow{FlowView: v}
	}
	d := flowDetail{Flow: row}
	branches := map[string]flows.BranchView{}
	for _, b := range v.Branches {
		branches[b.Name] = b
	}
	drawn := map[string]bool{}
	d.Chain = chain(v.Steps, branches, drawn)
	for _, b := range v.Branches {
		if !drawn[b.Name] {
			drawn[b.Name] = true
			d.Unrouted = append(d.Unrouted, graphBranch{Name: b.Name, Steps: chain(b.Steps, branches, drawn)})
		}
	}
	return d, true
}

// graphStep is a step of the drawn graph with the branches it routes to.
type graphStep struct {
	flows.StepView
	Routes []graphBranch
}

type graphBranch struct {
	Name  string
	Steps []graphStep
}

// chain lays out steps, each branch drawn once, under the first step
// that routes to it.
func chain(steps []flows.StepView, branches map[string]flows.BranchView, drawn map[string]bool) []graphStep {
	out := make([]graphStep, 0, len(steps))
	for _, st := range steps {
		g := graphStep{StepView: st}
		for _, name := range st.Branches {
			b, ok := branches[name]
			if !ok || drawn[name] {
				continue
			}
			drawn[name] = true
			g.Routes = append(g.Routes, graphBranch{Name: name, Steps: chain(b.Steps, branches, drawn)})
		}
		out = append(out, g)
	}
	return out
}

// maxYAML bounds the flow file shown beside the graph.
const maxYAML = 256 << 10

func (s *Server) flowPage(w http.ResponseWriter, r *http.Request, p *page) {
	d, ok := s.detail(r.Context(), r.PathValue("name"))
	if !ok {
		s.notFound(w, r, p, "No flow named "+r.PathValue("name")+" runs here.")
		return
	}
	if d.Flow.File != "" {
		b, err := os.ReadFile(d.Flow.File)
		switch {
		case err != nil:
			d.YAMLErr = "cannot read " + d.Flow.File + ": " + err.Error()
		case len(b) > maxYAML:
			d.YAML = string(b[:maxYAML]) + "\n# … (cut)"
		default:
			d.YAML = string(b)
		}
	}
	p.Title, p.Nav, p.Data = "Flow "+d.Flow.Name, "flows", d
	s.render(w, r, "flow", p)
}

// flowGraph is the flow's graph alone, polled by htmx for live counts.
func (s *Server) flowGraph(w http.ResponseWriter, r *http.Request, p *page) {
	d, ok := s.detail(r.Context(), r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	p.Data = d
	s.renderFragment(w, r, "flow", "graph", p)
}
