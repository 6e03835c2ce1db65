package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
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
	// MaxHops is how many flows a chain of messages may pass through
	// before a message is dead-lettered as looping (32 by default).
	MaxHops int
	// NoStreams consumes every flow through Watermill's router, one message
	// at a time, even on brokers that stream (for comparisons).
	NoStreams bool
	// DrainTimeout bounds how long shutdown waits for runs in flight
	// before cancelling them; 30s by default.
	DrainTimeout time.Duration
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

	mu       sync.Mutex // guards draining and inflight.Add
	draining bool
	inflight sync.WaitGroup

	hardCtx    context.Context // cancelled when draining times out
	hardCancel context.CancelFunc
	ready      chan struct{}
	httpMux    *http.ServeMux // routes of HTTP-triggered flows
	waiters    waiters        // auto-mode requests waiting for their run
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
	if opts.MaxHops <= 0 {
		opts.MaxHops = 32
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	for _, f := range flows {
		switch f.Trigger.Kind {
		case TriggerTopic, TriggerSchedule:
		case TriggerHTTP:
			if f.Trigger.HTTP.Uploads != "" && opts.Store == nil {
				return nil, fmt.Errorf("flow %s (%s): http uploads need storage", f.Name, f.Pos)
			}
		case TriggerBucket:
			if opts.Store == nil {
				return nil, fmt.Errorf("flow %s (%s): bucket triggers need storage", f.Name, f.Pos)
			}
		default:
			return nil, fmt.Errorf("flow %s (%s): %s triggers are validated but not run by this version of sluice", f.Name, f.Pos, f.Trigger.Kind)
		}
		for _, s := range allSteps(f) {
			if s.Node == nil {
				return nil, fmt.Errorf("flow %s: step %s was not constructed (load flows without problems first)", f.Name, s.ID)
			}
		}
		if s, _ := batcher(f); s != nil {
			if _, ok := opts.Broker.(brokers.Streamer); !ok || opts.NoStreams {
				return nil, fmt.Errorf("flow %s: step %s (%s) consumes batches, which this broker cannot stream; use sqlite://, kafka:// or amqp://", f.Name, s.ID, s.Type)
			}
		}
	}
	hardCtx, hardCancel := context.WithCancel(context.Background())
	e := &Engine{
		opts: opts, flows: flows, log: opts.Logger, m: opts.Metrics,
		hardCtx: hardCtx, hardCancel: hardCancel, ready: make(chan struct{}),
	}
	for _, f := range flows {
		e.runners = append(e.runners, newRunner(e, f))
	}
	e.buildHTTP()
	return e, nil
}

// runnerOf returns the runner of the named flow, or nil.
func (e *Engine) runnerOf(flow string) *runner {
	for _, r := range e.runners {
		if r.f.Name == flow {
			return r
		}
	}
	return nil
}

// enter counts a run as in flight, unless the engine is draining; leave
// ends it. Shutdown waits for the runs in flight.
func (e *Engine) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining {
		return false
	}
	e.inflight.Add(1)
	return true
}

func (e *Engine) leave() { e.inflight.Done() }

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
// then cancels them), and closes everything it started.
func (e *Engine) Run(ctx context.Context) (err error) {
	defer e.hardCancel()
	started, err := e.startNodes(ctx)
	defer func() { err = errors.Join(err, closeNodes(started)) }()
	if err != nil {
		return err
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: e.opts.DrainTimeout},
		WatermillLogger(e.log.With("component", "watermill")))
	if err != nil {
		return err
	}
	for _, r := range e.runners {
		f := r.f
		if f.Trigger.Kind == TriggerHTTP && f.Trigger.HTTP.Mode == "sync" {
			continue // run by HTTPHandler itself
		}
		if r.streamed() {
			continue // streamed, below
		}
		subs, err := r.subscribers(ctx)
		if err != nil {
			return fmt.Errorf("flow %s: %w", f.Name, err)
		}
		for i, sub := range subs {
			name := f.Name
			if len(subs) > 1 {
				name = fmt.Sprintf("%s#%d", f.Name, i)
			}
			router.AddConsumerHandler(name, f.InputTopic(), sub, r.handle)
		}
	}

	for topic, buckets := range e.eventTopics() {
		sub, err := e.opts.Broker.Subscriber("sluice-events")
		if err != nil {
			return fmt.Errorf("events topic %s: %w", topic, err)
		}
		router.AddConsumerHandler("sluice-events:"+topic, topic, sub, e.eventsHandler(topic, buckets))
	}
	if e.opts.Store != nil {
		for _, b := range e.stepBuckets() {
			if err := e.opts.Store.EnsureBucket(ctx, b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
	}

	if gi, ok := e.opts.Broker.(brokers.GroupInitializer); ok {
		// Queues that keep only what is published after they exist
		// (RabbitMQ) are declared before anything publishes.
		for _, r := range e.runners {
			if r.streamed() {
				if err := gi.InitializeGroup(ctx, r.f.InputTopic(), r.f.Group()); err != nil {
					return fmt.Errorf("flow %s: %w", r.f.Name, err)
				}
			}
		}
	}
	routerErr := make(chan error, 1)
	go func() { routerErr <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-routerErr:
		return fmt.Errorf("router: %w", err)
	case <-ctx.Done():
		_ = router.Close()
		return nil
	}

	bridgeCtx, stopBridges := context.WithCancel(ctx)
	var bridges sync.WaitGroup
	for _, b := range e.buckets() {
		if err := e.opts.Store.EnsureBucket(ctx, b); err != nil {
			stopBridges()
			_ = router.Close()
			return fmt.Errorf("bucket %s: %w", b, err)
		}
		bridges.Add(1)
		go func() { defer bridges.Done(); e.bridge(bridgeCtx, b) }()
	}
	for _, r := range e.runners {
		if r.f.Trigger.Kind == TriggerSchedule {
			bridges.Add(1)
			go func() { defer bridges.Done(); r.schedule(bridgeCtx) }()
		}
	}
	var streams []chan struct{}
	for _, r := range e.runners {
		if r.streamed() && e.enter() {
			// Counted as in flight: shutdown waits (up to DrainTimeout) for
			// the open batches and windows to be settled and committed.
			started := make(chan struct{})
			streams = append(streams, started)
			go func() { defer e.leave(); r.stream(bridgeCtx, started) }()
		}
	}
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
	e.log.Info("sluice engine running", "flows", len(e.flows))

	select {
	case <-ctx.Done():
	case err := <-routerErr:
		stopBridges()
		bridges.Wait()
		return fmt.Errorf("router stopped: %w", err)
	}

	// Shutdown: no new events, no new runs; let runs in flight finish.
	stopBridges()
	bridges.Wait()
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
	drained := make(chan struct{})
	go func() { e.inflight.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(e.opts.DrainTimeout):
		e.log.Warn("drain timeout: cancelling runs in flight; they will be redelivered", "timeout", e.opts.DrainTimeout)
		e.hardCancel()
		<-drained
	}
	err = router.Close()
	if e.opts.State != nil {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = errors.Join(err, e.opts.State.Flush(fctx))
		cancel()
	}
	e.log.Info("sluice engine stopped")
	return err
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
	for _, f := range e.flows {
		if b := f.Trigger.Bucket; b != nil && !seen[b.Bucket] {
			seen[b.Bucket] = true
			out = append(out, b.Bucket)
		}
	}
	return out
}

// stepBuckets returns the buckets steps name without expressions; they are
// created at start so the first write does not fail.
func (e *Engine) stepBuckets() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range e.flows {
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

func (e *Engine) startNodes(ctx context.Context) ([]*Step, error) {
	var started []*Step
	for _, f := range e.flows {
		for _, s := range allSteps(f) {
			started = append(started, s)
			if st, ok := s.Node.(nodes.Starter); ok {
				if err := st.Start(ctx); err != nil {
					return started, fmt.Errorf("flow %s: step %s (%s): start: %w", f.Name, s.ID, s.Type, err)
				}
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
