package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/internal/poison"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

// Options are an engine's services.
type Options struct {
	Broker brokers.Broker // required
	Store  *storage.Store // required by bucket triggers and storage nodes
	State  *state.DB      // optional: run ledger, completion ledger, bucket event de-duplication
	// NoLedger skips the completion ledger (runs are still recorded): a
	// redelivered input runs again (at-least-once), and a run's ack waits
	// for no commit.
	NoLedger bool
	Logger   *slog.Logger // slog.Default() when nil
	// Metrics; a private registry's when nil.
	Metrics *Metrics
	// Poison records the inputs in flight, so an input that keeps killing
	// the process is dead-lettered; poison.Nop (no record) when nil.
	Poison poison.Store
	// MaxCrashes is how many process deaths an input may be in flight
	// for before it is dead-lettered without running again (0:
	// poison.DefaultMaxCrashes).
	MaxCrashes int
	// MaxHops is how many flows a chain of messages may pass through
	// before a message is dead-lettered as looping (32 by default).
	MaxHops int
	// NoStreams consumes every flow through Watermill's router, one message
	// at a time, even on brokers that stream (for comparisons).
	NoStreams bool
	// DrainTimeout bounds how long shutdown waits for runs in flight
	// before cancelling them; 30s by default.
	DrainTimeout time.Duration
	// OnRunEnd, when set, is called once for every run that ends (and
	// every input the trigger filters out), concurrently from the
	// goroutines that settle runs; it must not block. For tests (sluice
	// test), see testhooks.go.
	OnRunEnd func(RunEnd)
	// TracerProvider traces every run and step attempt (see trace.go);
	// nil: nothing is traced, at no cost.
	TracerProvider trace.TracerProvider
}

// Engine runs flows: each flow is a Watermill consumer handler on one
// router, subscribed to its trigger's topic as its consumer group.
//
// Per message, the steps run in order over one Envelope. The input is
// acked only after every step succeeded and every output was published.
// A permanent error, or a transient one that outlived its retries, sends
// the input to the flow's dead-letter topic with the reason, and then acks
// it; if even that fails the input is nacked and redelivered. A panic in a
// node is a permanent error of that step: the process keeps serving.
type Engine struct {
	opts  Options
	flows []*Flow
	log   *slog.Logger
	m     *Metrics

	runners []*runner // one per flow, in flows' order

	// flowsMu guards flows, runners and units, which Reload replaces;
	// reloadMu serialises Reload with itself and with Run's start and
	// shutdown (see reload.go).
	flowsMu  sync.RWMutex
	units    map[string]*unit // by flow name
	reloadMu sync.Mutex
	live     *liveSet // what Run started; nil before Run
	stopping atomic.Bool

	runs inFlight // every run: shutdown waits for them

	hardCtx    context.Context // cancelled when draining times out
	hardCancel context.CancelFunc
	ready      chan struct{}
	fatal      chan error                    // a flow's consumer stopped on its own
	httpMux    atomic.Pointer[http.ServeMux] // routes of HTTP-triggered flows
	waiters    waiters                       // auto-mode requests waiting for their run
}

// NewEngine prepares an engine for flows loaded with services (see Loader.Deps).
func NewEngine(opts Options, flows []*Flow) (*Engine, error) {
	if opts.Broker == nil {
		return nil, errors.New("engine: a broker is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if opts.Poison == nil {
		opts.Poison = poison.Nop{}
	}
	if opts.MaxCrashes <= 0 {
		opts.MaxCrashes = poison.DefaultMaxCrashes
	}
	if opts.MaxHops <= 0 {
		opts.MaxHops = 32
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	if err := crossCheck(flows).Err(); err != nil {
		return nil, err // flows of separate loads
	}
	for _, f := range flows {
		if err := checkFlow(opts, f); err != nil {
			return nil, err
		}
	}
	hardCtx, hardCancel := context.WithCancel(context.Background())
	e := &Engine{
		opts: opts, log: opts.Logger, m: opts.Metrics,
		hardCtx: hardCtx, hardCancel: hardCancel, ready: make(chan struct{}), fatal: make(chan error, 1),
	}
	units := map[string]*unit{}
	for _, f := range flows {
		units[f.Name] = e.newUnit(f)
	}
	e.setFlows(slices.Clone(flows), units)
	return e, nil
}

// checkFlow reports why the engine cannot run a flow, if it cannot.
func checkFlow(opts Options, f *Flow) error {
	switch f.Trigger.Kind {
	case TriggerTopic, TriggerSchedule:
	case TriggerHTTP:
		if f.Trigger.HTTP.Uploads != "" && opts.Store == nil {
			return fmt.Errorf("flow %s (%s): http uploads need storage", f.Name, f.Pos)
		}
	case TriggerBucket:
		if opts.Store == nil {
			return fmt.Errorf("flow %s (%s): bucket triggers need storage", f.Name, f.Pos)
		}
	default:
		return fmt.Errorf("flow %s (%s): %s triggers are validated but not run by this version of sluice", f.Name, f.Pos, f.Trigger.Kind)
	}
	for _, s := range allSteps(f) {
		if s.Node == nil {
			return fmt.Errorf("flow %s: step %s was not constructed (load flows without problems first)", f.Name, s.ID)
		}
	}
	if s, _ := batcher(f); s != nil {
		if _, ok := opts.Broker.(brokers.Streamer); !ok || opts.NoStreams {
			return fmt.Errorf("flow %s: step %s (%s) consumes batches, which this broker cannot stream; use sqlite://, kafka:// or amqp://", f.Name, s.ID, s.Type)
		}
	}
	return nil
}

// runnerOf returns the runner of the named flow, or nil.
func (e *Engine) runnerOf(flow string) *runner {
	e.flowsMu.RLock()
	defer e.flowsMu.RUnlock()
	if u := e.units[flow]; u != nil {
		return u.r
	}
	return nil
}

// enter counts a run as in flight, unless the engine is draining; leave
// ends it. Shutdown waits for the runs in flight.
func (e *Engine) enter() bool { return e.runs.enter() }

func (e *Engine) leave() { e.runs.leave() }

// inFlight counts runs in flight until it drains: once drain is called,
// enter refuses new runs, and the channel drain returns is closed when
// the last run left.
type inFlight struct {
	mu       sync.Mutex // guards draining and wg.Add
	draining bool
	wg       sync.WaitGroup
}

func (c *inFlight) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return false
	}
	c.wg.Add(1)
	return true
}

func (c *inFlight) leave() { c.wg.Done() }

func (c *inFlight) drain() <-chan struct{} {
	c.mu.Lock()
	c.draining = true
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	return done
}

func allSteps(f *Flow) []*Step {
	out := append([]*Step(nil), f.Steps...)
	for _, b := range f.Branches {
		out = append(out, b...)
	}
	return out
}

// Err reports why the engine is not acking inputs now, if it is not: the
// state database cannot be written (disk full, locked). Inputs are then
// left unacked, to be redelivered, until a write succeeds again.
func (e *Engine) Err() error {
	if e.opts.State != nil {
		if err := e.opts.State.Err(); err != nil {
			return fmt.Errorf("state database: %w", err)
		}
	}
	return nil
}

// Ready is closed once every flow is subscribed and bucket watchers run.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// Run starts the nodes and the flows and blocks until ctx ends; then it
// stops taking messages, waits for runs in flight (up to DrainTimeout,
// then cancels them), and closes everything it started. While it runs,
// Reload replaces flows one by one.
func (e *Engine) Run(ctx context.Context) (err error) {
	defer e.hardCancel()
	e.reloadMu.Lock()
	unitsCtx, stopUnits := context.WithCancel(ctx)
	defer stopUnits()
	e.live = &liveSet{ctx: unitsCtx, bridges: map[string]*watch{}, events: map[string]*watch{}}
	e.flowsMu.RLock()
	var us []*unit
	for _, r := range e.runners {
		us = append(us, e.units[r.f.Name])
	}
	e.flowsMu.RUnlock()
	streams, failed := e.startUnits(ctx, us, false)
	if err := errors.Join(slices.Collect(maps.Values(failed))...); err != nil {
		e.reloadMu.Unlock()
		return errors.Join(err, e.stop(stopUnits))
	}
	if err := e.syncWatches(ctx); err != nil {
		e.reloadMu.Unlock()
		return errors.Join(err, e.stop(stopUnits))
	}
	e.reloadMu.Unlock()
	if !e.opts.Broker.Features().Persistent {
		// Messages published before a stream subscribes are lost here:
		// be ready only once every stream runs.
		for _, started := range streams {
			select {
			case <-started:
			case <-ctx.Done():
			}
		}
	}
	close(e.ready)
	e.log.Info("sluice engine running", "flows", len(us))

	select {
	case <-ctx.Done():
	case err = <-e.fatal:
		err = fmt.Errorf("router stopped: %w", err)
	}
	err = errors.Join(err, e.stop(stopUnits))
	e.log.Info("sluice engine stopped")
	return err
}

// stop shuts the engine down: no new events, no new runs; runs in flight
// finish (up to DrainTimeout, then they are cancelled); then consumers
// and nodes are closed and the state database flushed.
func (e *Engine) stop(stopUnits context.CancelFunc) error {
	e.stopping.Store(true)
	stopUnits() // streams, schedules and bucket watches end
	drained := e.runs.drain()
	select {
	case <-drained:
	case <-time.After(e.opts.DrainTimeout):
		e.log.Warn("drain timeout: cancelling runs in flight; they will be redelivered", "timeout", e.opts.DrainTimeout)
		e.hardCancel()
		<-drained
	}
	e.reloadMu.Lock() // a reload under way finishes first
	defer e.reloadMu.Unlock()
	var errs []error
	for _, w := range e.live.events {
		errs = append(errs, w.stop())
	}
	for _, w := range e.live.bridges {
		errs = append(errs, w.stop())
	}
	e.flowsMu.RLock()
	us := slices.Collect(maps.Values(e.units))
	e.flowsMu.RUnlock()
	for _, u := range us {
		errs = append(errs, u.stop())
	}
	if e.opts.State != nil {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, e.opts.State.Flush(fctx))
		cancel()
	}
	return errors.Join(errs...)
}

// subscribers returns one subscriber per message the flow may process at
// once: the broker's partitions of the flow's group when concurrency is
// above 1 and the broker has partitions, else one.
func (r *runner) subscribers(ctx context.Context) ([]message.Subscriber, error) {
	f, b := r.f, r.e.opts.Broker
	group := f.Group()
	if f.Concurrency > 1 {
		if p, ok := b.(brokers.Partitioner); ok {
			return p.Partitions(ctx, f.InputTopic(), group, f.Concurrency)
		}
		r.log.Warn("this broker cannot split a topic between subscribers; the flow processes one message at a time",
			"concurrency", f.Concurrency)
	}
	sub, err := b.Subscriber(group)
	if err != nil {
		return nil, err
	}
	return []message.Subscriber{sub}, nil
}

// buckets returns the trigger buckets, which are watched.
func (e *Engine) buckets() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range e.flowList() {
		if b := f.Trigger.Bucket; b != nil && !seen[b.Bucket] {
			seen[b.Bucket] = true
			out = append(out, b.Bucket)
		}
	}
	return out
}

// stepBuckets returns the buckets the flows' steps name without
// expressions; they are created at start so the first write does not fail.
func stepBuckets(flows []*Flow) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range flows {
		if h := f.Trigger.HTTP; h != nil && h.Uploads != "" && !seen[h.Uploads] {
			seen[h.Uploads] = true
			out = append(out, h.Uploads)
		}
		for _, s := range allSteps(f) {
			for _, r := range s.Config.Refs() {
				if r.Role == nodes.RoleBucket && r.Value != "" && !seen[r.Value] {
					seen[r.Value] = true
					out = append(out, r.Value)
				}
			}
		}
	}
	return out
}

// startNodes starts the flow's nodes that are Starters; it returns the
// steps it tried, to be closed even when one failed.
func startNodes(ctx context.Context, f *Flow) ([]*Step, error) {
	var started []*Step
	for _, s := range allSteps(f) {
		started = append(started, s)
		if st, ok := s.Node.(nodes.Starter); ok {
			if err := st.Start(ctx); err != nil {
				return started, fmt.Errorf("flow %s: step %s (%s): start: %w", f.Name, s.ID, s.Type, err)
			}
		}
	}
	return started, nil
}

func closeNodes(steps []*Step) error {
	var errs []error
	for _, s := range steps {
		if c, ok := s.Node.(nodes.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("step %s (%s): close: %w", s.ID, s.Type, err))
			}
		}
	}
	return errors.Join(errs...)
}

// errDraining nacks messages that arrive during shutdown: they stay in the
// broker for the next start.
var errDraining = errors.New("engine is shutting down")
