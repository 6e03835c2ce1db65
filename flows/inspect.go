package flows

import (
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// The engine's read side for dashboards: what each flow is (trigger,
// steps, branches, where it writes) and how it is doing (counts, errors,
// latency quantiles, lag), read from the engine's own metrics. Nothing here
// changes the engine; every method is safe to call while it runs.

// FlowView is one flow as the engine runs it, with its live counters.
type FlowView struct {
	Name        string
	Description string
	File        string // the YAML file it was loaded from
	Trigger     TriggerKind
	// Source names what triggers it: the topic, bucket, HTTP path or cron
	// spec.
	Source      string
	InputTopic  string // the topic its runs are consumed from
	Group       string // its consumer group
	DeadLetter  string // its dead-letter topic
	Concurrency int
	Record      string // which runs leave a record: RecordAll or RecordFailures
	Steps       []StepView
	Branches    []BranchView // by name
	Stats       FlowStats
}

// BranchView is one named branch of a flow: the steps a switch routes to.
type BranchView struct {
	Name  string
	Steps []StepView
}

// StepView is one step, with where it routes and writes and its counters.
type StepView struct {
	ID   string
	Node string // the node type
	When bool   // the step has a `when` condition
	// Branches, Topics and Buckets are the names its configuration routes
	// to, publishes to and writes to (those given without expressions).
	Branches, Topics, Buckets []string
	Stats                     StepStats
}

// FlowStats are a flow's counters since the process started. Lag is how
// many messages of its input topic its group has yet to consume, -1 when
// the broker cannot tell (or was not asked).
type FlowStats struct {
	Received     int64
	Succeeded    int64
	DeadLettered int64
	Failed       int64 // failed runs left for redelivery
	Duplicates   int64
	Filtered     int64
	P50, P99     time.Duration // run duration quantiles, estimated from the histogram buckets
	Lag          int64
}

// Runs is the count of finished runs that ran (duplicates excluded).
func (s FlowStats) Runs() int64 { return s.Succeeded + s.DeadLettered + s.Failed + s.Filtered }

// Errors is the count of runs that failed, dead-lettered or not.
func (s FlowStats) Errors() int64 { return s.DeadLettered + s.Failed }

// StepStats are a step's counters since the process started.
type StepStats struct {
	Succeeded, Failed, Skipped int64
	FailedAttempts             int64 // every failed attempt, retries included
	P50, P99                   time.Duration
}

// Count is the step's executions (skipped ones excluded).
func (s StepStats) Count() int64 { return s.Succeeded + s.Failed }

// Flows describes the engine's flows in their load order, with their
// counters. Lag is left at -1: see Lag.
func (e *Engine) Flows() []FlowView {
	e.flowsMu.RLock()
	runners := e.runners // Reload replaces the slice, never changes it
	e.flowsMu.RUnlock()
	out := make([]FlowView, 0, len(runners))
	for _, r := range runners {
		out = append(out, r.view())
	}
	return out
}

// Flow describes the named flow; false when the engine has no such flow.
func (e *Engine) Flow(name string) (FlowView, bool) {
	r := e.runnerOf(name)
	if r == nil {
		return FlowView{}, false
	}
	return r.view(), true
}

// Lag fills each view's Stats.Lag from the broker, when it implements
// brokers.Inspector; views stay at -1 otherwise or when asking fails.
func (e *Engine) Lag(ctx context.Context, views []FlowView) {
	in, ok := e.opts.Broker.(brokers.Inspector)
	if !ok {
		return
	}
	topics, err := in.Topics(ctx)
	if err != nil {
		return
	}
	for i := range views {
		v := &views[i]
		for _, t := range topics {
			if t.Name != v.InputTopic {
				continue
			}
			for _, g := range t.Groups {
				if g.Name == v.Group {
					v.Stats.Lag = g.Lag
				}
			}
		}
	}
}

// ReplayDeadLetters replays the dead letters matching f through the
// engine's broker (see the package function ReplayDeadLetters); progress,
// when not nil, is called after each one. It fails when the engine records
// no state.
func (e *Engine) ReplayDeadLetters(ctx context.Context, f state.DeadLetterFilter, progress func(done, total int)) (int, error) {
	if e.opts.State == nil {
		return 0, errNoState
	}
	return ReplayDeadLetters(ctx, e.opts.Broker.Publisher(), e.opts.State, f, "", progress)
}

var errNoState = errors.New("the engine records no state: no runs or dead letters")

func (r *runner) view() FlowView {
	f := r.f
	v := FlowView{
		Name: f.Name, Description: f.Description, File: f.File, Trigger: f.Trigger.Kind,
		InputTopic: f.InputTopic(), Group: f.Group(), DeadLetter: f.DeadLetter, Concurrency: f.Concurrency, Record: f.Record,
	}
	v.Source = f.Trigger.label()[len(f.Trigger.Kind)+1:]
	for _, s := range f.Steps {
		v.Steps = append(v.Steps, r.stepView(s))
	}
	names := make([]string, 0, len(f.Branches))
	for name := range f.Branches {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b := BranchView{Name: name}
		for _, s := range f.Branches[name] {
			b.Steps = append(b.Steps, r.stepView(s))
		}
		v.Branches = append(v.Branches, b)
	}
	m := r.m
	v.Stats = FlowStats{
		Received:     counterValue(m.received),
		Succeeded:    counterValue(m.runs["succeeded"]),
		DeadLettered: counterValue(m.runs["dead_lettered"]),
		Failed:       counterValue(m.runs["failed"]),
		Duplicates:   counterValue(m.runs["duplicate"]),
		Filtered:     counterValue(m.runs["filtered"]),
		Lag:          -1,
	}
	v.Stats.P50, v.Stats.P99 = quantiles(m.runLatency)
	return v
}

func (r *runner) stepView(s *Step) StepView {
	sv := StepView{ID: s.ID, Node: s.Type, When: s.When != nil}
	if s.Config != nil {
		for _, ref := range s.Config.Refs() {
			if ref.Value == "" {
				continue
			}
			switch ref.Role {
			case nodes.RoleBranch:
				sv.Branches = appendNew(sv.Branches, ref.Value)
			case nodes.RoleTopic:
				sv.Topics = appendNew(sv.Topics, ref.Value)
			case nodes.RoleBucket:
				sv.Buckets = appendNew(sv.Buckets, ref.Value)
			}
		}
	}
	if sm := r.m.steps[s]; sm != nil {
		sv.Stats = StepStats{
			Succeeded: counterValue(sm.succeeded), Failed: counterValue(sm.failed), Skipped: counterValue(sm.skipped),
			FailedAttempts: counterValue(sm.failedAttempts),
		}
		sv.Stats.P50, sv.Stats.P99 = quantiles(sm.latency)
	}
	return sv
}

func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

// counterValue reads a counter's value; 0 for a collector that is not one.
func counterValue(c prometheus.Counter) int64 {
	if c == nil {
		return 0
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return int64(m.Counter.GetValue())
}

// quantiles estimates the median and 99th percentile of a histogram by
// linear interpolation inside its buckets, as Prometheus'
// histogram_quantile does; zeros when it observed nothing.
func quantiles(o prometheus.Observer) (p50, p99 time.Duration) {
	h, ok := o.(prometheus.Metric)
	if !ok {
		return 0, 0
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return 0, 0
	}
	return histogramQuantile(0.5, m.Histogram), histogramQuantile(0.99, m.Histogram)
}

func histogramQuantile(q float64, h *dto.Histogram) time.Duration {
	total := h.GetSampleCount()
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var prevCount uint64
	prevBound := 0.0
	for _, b := range h.GetBucket() {
		count, bound := b.GetCumulativeCount(), b.GetUpperBound()
		if float64(count) >= rank {
			in := float64(count - prevCount)
			frac := 1.0
			if in > 0 {
				frac = (rank - float64(prevCount)) / in
			}
			return seconds(prevBound + (bound-prevBound)*frac)
		}
		prevCount, prevBound = count, bound
	}
	// Beyond the last bucket: the last bound is all that is known.
	return seconds(prevBound)
}

func seconds(s float64) time.Duration {
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
