package flows

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/nodes"
)

// Metrics are the engine's Prometheus metrics, per flow and per step. The
// engine observes every node, so node authors write no metrics code.
type Metrics struct {
	received    *prometheus.CounterVec
	runs        *prometheus.CounterVec
	runLatency  *prometheus.HistogramVec
	steps       *prometheus.CounterVec
	stepLatency *prometheus.HistogramVec
	attempts    *prometheus.CounterVec
	published   *prometheus.CounterVec
	events      *prometheus.CounterVec
	abandoned   prometheus.Gauge
	calls       *prometheus.HistogramVec
	callErrors  *prometheus.CounterVec
	coldStarts  *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_messages_received_total", Help: "Messages delivered to a flow."}, []string{"flow"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_runs_total", Help: "Finished runs by status (succeeded, dead_lettered, failed, filtered)."}, []string{"flow", "status"}),
		runLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_run_duration_seconds", Help: "Run latency, all steps and outputs.", Buckets: buckets}, []string{"flow"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_step_runs_total", Help: "Step executions by status (succeeded, failed, skipped)."}, []string{"flow", "step", "node", "status"}),
		stepLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_step_duration_seconds", Help: "Step latency, retries included.", Buckets: buckets}, []string{"flow", "step", "node"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_step_failed_attempts_total", Help: "Failed attempts of steps, each retry counted (a batch write retried while its store is down shows here at once)."}, []string{"flow", "step", "node"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_messages_published_total", Help: "Messages published by flows, dead letters included."}, []string{"flow"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_bucket_events_total", Help: "Object events turned into messages, by bucket and outcome (published, repeat)."}, []string{"bucket", "outcome"}),
		abandoned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_step_abandoned_calls", Help: "Node calls still running after their step timed out and the engine stopped waiting for them (a node ignoring its context)."}),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_call_duration_seconds", Help: "Metered calls of nodes (user functions, model inferences) by kind and name: count and duration.", Buckets: buckets}, []string{"flow", "kind", "name"}),
		callErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_call_errors_total", Help: "Metered calls that failed."}, []string{"flow", "kind", "name"}),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_call_cold_starts_total", Help: "Metered calls that had to start a worker or instance first."}, []string{"flow", "kind", "name"}),
	}
	reg.MustRegister(m.received, m.runs, m.runLatency, m.steps, m.stepLatency, m.attempts, m.published, m.events, m.abandoned,
		m.calls, m.callErrors, m.coldStarts)
	return m
}

// flowMetrics are one flow's metric children, resolved once so the message
// path does no label hashing.
type flowMetrics struct {
	m          *Metrics
	flow       string
	received   prometheus.Counter
	runs       map[string]prometheus.Counter // by status
	runLatency prometheus.Observer
	published  prometheus.Counter
	steps      map[*Step]*stepMetrics
}

type stepMetrics struct {
	succeeded, failed, skipped prometheus.Counter
	failedAttempts             prometheus.Counter
	latency                    prometheus.Observer
}

func (m *Metrics) forFlow(f *Flow) *flowMetrics {
	fm := &flowMetrics{
		m: m, flow: f.Name,
		received:   m.received.WithLabelValues(f.Name),
		runs:       map[string]prometheus.Counter{},
		runLatency: m.runLatency.WithLabelValues(f.Name),
		published:  m.published.WithLabelValues(f.Name),
		steps:      map[*Step]*stepMetrics{},
	}
	for _, s := range []string{"succeeded", "failed", "dead_lettered", "duplicate", "filtered"} {
		fm.runs[s] = m.runs.WithLabelValues(f.Name, s)
	}
	for _, s := range allSteps(f) {
		fm.steps[s] = &stepMetrics{
			succeeded:      m.steps.WithLabelValues(f.Name, s.ID, s.Type, "succeeded"),
			failed:         m.steps.WithLabelValues(f.Name, s.ID, s.Type, "failed"),
			skipped:        m.steps.WithLabelValues(f.Name, s.ID, s.Type, "skipped"),
			failedAttempts: m.attempts.WithLabelValues(f.Name, s.ID, s.Type),
			latency:        m.stepLatency.WithLabelValues(f.Name, s.ID, s.Type),
		}
	}
	return fm
}

// observeCalls counts a step's metered calls.
func (fm *flowMetrics) observeCalls(calls []nodes.Call) {
	for _, c := range calls {
		fm.m.calls.WithLabelValues(fm.flow, c.Kind, c.Name).Observe(c.Duration.Seconds())
		if c.Error != "" {
			fm.m.callErrors.WithLabelValues(fm.flow, c.Kind, c.Name).Inc()
		}
		if c.ColdStart {
			fm.m.coldStarts.WithLabelValues(fm.flow, c.Kind, c.Name).Inc()
		}
	}
}
