package flows

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/brokers"
)

// Reloading: each flow runs as a unit — its runner, its nodes, and what
// consumes its input (a router of its own, its streams, its schedule) —
// that starts and stops on its own. Reload compares the flows loaded
// again with the running ones by a hash of each flow's YAML (variables
// resolved, comments and positions ignored): unchanged flows are left
// running untouched; changed and removed flows drain (their consumers
// stop taking messages, runs in flight finish and are settled and
// committed, what was taken but not committed is delivered again to the
// new definition, where the completion ledger makes it run once), their
// nodes are closed, and then changed and added flows start. HTTP routes
// are swapped at once: a request is served by the routes current when it
// arrives, and one that finds its flow draining is served by the new
// routes.

// Report says what a reload did, by flow name (each list sorted).
type Report struct {
	Added, Changed, Removed, Unchanged []string
	// Failed are the added or changed flows that could not start (a node
	// failed to start, a queue could not be declared): they are not
	// running; a changed one's old definition was stopped before.
	Failed map[string]error
}

// Changes counts the flows the reload started or stopped.
func (r Report) Changes() int { return len(r.Added) + len(r.Changed) + len(r.Removed) }

// liveSet is what Run started besides the flows: bucket watches and
// events-topic consumers, and the context flows run under.
type liveSet struct {
	ctx     context.Context   // cancelled at shutdown
	bridges map[string]*watch // bucket watches, by bucket
	events  map[string]*watch // events-topic consumers, by topic
}

// watch is a bucket watch or an events-topic consumer.
type watch struct {
	key    string // what it was started for (an events topic's buckets)
	cancel context.CancelFunc
	done   chan struct{}
	router *message.Router
}

func (w *watch) stop() error {
	var err error
	if w.cancel != nil {
		w.cancel()
	}
	if w.router != nil {
		err = w.router.Close()
	}
	<-w.done
	return err
}

// unit is one flow as it runs. Its runs are counted twice: in the
// engine's in-flight count (shutdown) and in its own (a reload's drain).
type unit struct {
	e *Engine
	r *runner

	up      chan struct{} // closed once started (or failed to: err)
	err     error
	retired atomic.Bool // replaced or removed: its routes are not current

	cancel     context.CancelFunc // ends its streams and schedule
	router     *message.Router    // its router-path consumers, if any
	routerDone chan struct{}
	stopping   atomic.Bool
	tasks      sync.WaitGroup // streams and schedule
	started    []*Step        // nodes to close
	stopOnce   sync.Once
	stopErr    error

	runs inFlight // its router handlers' and HTTP requests' runs
}

func (e *Engine) newUnit(f *Flow) *unit {
	return &unit{e: e, r: newRunner(e, f), up: make(chan struct{})}
}

func (u *unit) enter() bool { return u.runs.enter() }

func (u *unit) leave() { u.runs.leave() }

// handle is the flow's router handler, counted in the unit.
func (u *unit) handle(msg *message.Message) error {
	if !u.enter() {
		return errDraining
	}
	defer u.leave()
	return u.r.handle(msg)
}

// launch starts what consumes the flow's input: router-path subscribers,
// streams and the schedule (its nodes are started already). started is
// closed once the flow's stream runs; nil when the flow does not stream.
func (u *unit) launch(ctx context.Context) (started chan struct{}, err error) {
	e, r, f := u.e, u.r, u.r.f
	uctx, cancel := context.WithCancel(e.live.ctx)
	u.cancel = cancel
	if !(f.Trigger.Kind == TriggerHTTP && f.Trigger.HTTP.Mode == "sync") && !r.streamed() {
		subs, err := r.subscribers(ctx)
		if err != nil {
			return nil, fmt.Errorf("flow %s: %w", f.Name, err)
		}
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: e.opts.DrainTimeout},
			WatermillLogger(e.log.With("component", "watermill", "flow", f.Name)))
		if err != nil {
			return nil, err
		}
		for i, sub := range subs {
			name := f.Name
			if len(subs) > 1 {
				name = fmt.Sprintf("%s#%d", f.Name, i)
			}
			router.AddConsumerHandler(name, f.InputTopic(), sub, u.handle)
		}
		routerErr := make(chan error, 1)
		u.router, u.routerDone = router, make(chan struct{})
		go func() {
			defer close(u.routerDone)
			err := router.Run(context.Background())
			if err == nil {
				err = errors.New("every subscriber of the flow stopped")
			}
			routerErr <- err
			select {
			case <-router.Running(): // it ran: stopping on its own ends the engine
				if !u.stopping.Load() {
					select {
					case e.fatal <- fmt.Errorf("flow %s: %w", f.Name, err):
					default:
					}
				}
			default: // it never ran: launch reports why
			}
		}()
		select {
		case <-router.Running():
		case err := <-routerErr:
			return nil, fmt.Errorf("flow %s: router: %w", f.Name, err)
		}
	}
	if r.streamed() && e.enter() {
		// Counted as in flight: shutdown waits (up to DrainTimeout) for
		// the open batches and windows to be settled and committed.
		started = make(chan struct{})
		u.tasks.Go(func() { defer e.leave(); r.stream(uctx, started) })
	}
	if f.Trigger.Kind == TriggerSchedule {
		u.tasks.Go(func() { r.schedule(uctx) })
	}
	return started, nil
}

// stop drains the unit: no new runs; its consumers stop, runs in flight
// finish and are settled; then its nodes are closed. Waiting is bounded
// by the flow's run timeout (and by shutdown's DrainTimeout), so a drain
// running long is only logged. Calls after the first return its error.
func (u *unit) stop() error {
	u.stopOnce.Do(func() { u.stopErr = u.drain() })
	return u.stopErr
}

func (u *unit) drain() error {
	runs := u.runs.drain()
	u.stopping.Store(true)
	if u.cancel != nil {
		u.cancel()
	}
	var err error
	if u.router != nil {
		err = u.router.Close() // waits for its handlers (up to DrainTimeout)
		<-u.routerDone
	}
	drained := make(chan struct{})
	go func() { u.tasks.Wait(); <-runs; close(drained) }()
	select {
	case <-drained:
	case <-time.After(u.e.opts.DrainTimeout):
		u.r.log.Warn("draining the flow takes longer than the drain timeout; waiting for its runs (each ends within the flow's timeout)",
			"drain_timeout", u.e.opts.DrainTimeout, "timeout", u.r.f.Timeout)
		<-drained
	}
	return errors.Join(err, closeNodes(u.started))
}

// startUnits starts units in phases, so no flow publishes before every
// queue is declared: nodes, the buckets steps write to, consumer groups,
// then consumers. A unit that fails is stopped and reported in failed;
// unless isolate, the first failure stops the rest from starting (the
// caller then stops them all).
func (e *Engine) startUnits(ctx context.Context, us []*unit, isolate bool) (streams []chan struct{}, failed map[*unit]error) {
	failed = map[*unit]error{}
	fail := func(u *unit, err error) {
		failed[u] = err
		_ = u.stop()
		u.err = err
		close(u.up)
	}
	ok := func() []*unit {
		if !isolate && len(failed) > 0 {
			return nil // the caller stops every unit
		}
		var out []*unit
		for _, u := range us {
			if _, bad := failed[u]; !bad {
				out = append(out, u)
			}
		}
		return out
	}
	for _, u := range us {
		if !isolate && len(failed) > 0 {
			break
		}
		started, err := startNodes(ctx, u.r.f)
		u.started = started
		if err != nil {
			fail(u, err)
		}
	}
	if e.opts.Store != nil {
		for _, u := range ok() {
			for _, b := range stepBuckets([]*Flow{u.r.f}) {
				if err := e.opts.Store.EnsureBucket(ctx, b); err != nil {
					fail(u, fmt.Errorf("bucket %s: %w", b, err))
					break
				}
			}
		}
	}
	if gi, isGI := e.opts.Broker.(brokers.GroupInitializer); isGI {
		// Queues that keep only what is published after they exist
		// (RabbitMQ) are declared before anything publishes.
		for _, u := range ok() {
			if u.r.streamed() {
				if err := gi.InitializeGroup(ctx, u.r.f.InputTopic(), u.r.f.Group()); err != nil {
					fail(u, fmt.Errorf("flow %s: %w", u.r.f.Name, err))
				}
			}
		}
	}
	for _, u := range ok() {
		if e.stopping.Load() {
			fail(u, errors.New("not started: the engine is stopping"))
			continue
		}
		started, err := u.launch(ctx)
		if err != nil {
			fail(u, err)
			continue
		}
		if started != nil {
			streams = append(streams, started)
		}
		close(u.up)
	}
	return streams, failed
}

// setFlows makes flows (with their units) the engine's, and builds their
// HTTP routes.
func (e *Engine) setFlows(flows []*Flow, units map[string]*unit) {
	e.flowsMu.Lock()
	defer e.flowsMu.Unlock()
	for name, u := range e.units {
		if units[name] != u {
			u.retired.Store(true)
		}
	}
	e.flows, e.units, e.runners = flows, units, nil
	for _, f := range flows {
		e.runners = append(e.runners, units[f.Name].r)
	}
	e.buildHTTP()
}

// flowList returns the flows running now.
func (e *Engine) flowList() []*Flow {
	e.flowsMu.RLock()
	defer e.flowsMu.RUnlock()
	return e.flows
}

// gate counts an HTTP route's requests in its flow's unit, so a reload
// drains them; a request that reaches a flow being replaced is served by
// the current routes, and one that reaches a flow still starting waits
// for it. It is called by buildHTTP, with flowsMu held.
func (e *Engine) gate(r *runner, h http.Handler) http.Handler {
	u := e.units[r.f.Name]
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-e.ready:
		default:
			h.ServeHTTP(w, req) // answers 503: starting
			return
		}
		if u.retired.Load() {
			e.httpMux.Load().ServeHTTP(w, req)
			return
		}
		select {
		case <-u.up:
		case <-req.Context().Done():
			return
		}
		if u.err != nil {
			w.Header().Set("Retry-After", "5")
			httpError(w, http.StatusServiceUnavailable, "the flow failed to start", "")
			return
		}
		if !u.enter() {
			if u.retired.Load() {
				e.httpMux.Load().ServeHTTP(w, req)
			} else {
				h.ServeHTTP(w, req) // shutting down: answers 503
			}
			return
		}
		defer u.leave()
		h.ServeHTTP(w, req)
	})
}

// syncWatches starts the bucket watches and events-topic consumers the
// flows need and stops those they no longer need (reloadMu held).
func (e *Engine) syncWatches(ctx context.Context) error {
	want := map[string]bool{}
	for _, b := range e.buckets() {
		want[b] = true
	}
	var errs []error
	for b, w := range e.live.bridges {
		if !want[b] {
			errs = append(errs, w.stop())
			delete(e.live.bridges, b)
		}
	}
	for _, b := range e.buckets() {
		if e.live.bridges[b] != nil {
			continue
		}
		if err := e.opts.Store.EnsureBucket(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("bucket %s: %w", b, err))
			continue
		}
		bctx, cancel := context.WithCancel(e.live.ctx)
		w := &watch{cancel: cancel, done: make(chan struct{})}
		go func() { defer close(w.done); e.bridge(bctx, b) }()
		e.live.bridges[b] = w
	}
	topics := e.eventTopics()
	for topic, w := range e.live.events {
		if buckets, ok := topics[topic]; !ok || w.key != keyOf(buckets) {
			errs = append(errs, w.stop())
			delete(e.live.events, topic)
		}
	}
	for topic, buckets := range topics {
		if e.live.events[topic] != nil {
			continue
		}
		w, err := e.consumeEvents(topic, buckets)
		if err != nil {
			errs = append(errs, fmt.Errorf("events topic %s: %w", topic, err))
			continue
		}
		e.live.events[topic] = w
	}
	return errors.Join(errs...)
}

// consumeEvents starts a router consuming an events topic.
func (e *Engine) consumeEvents(topic string, buckets map[string]bool) (*watch, error) {
	sub, err := e.opts.Broker.Subscriber("sluice-events")
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: e.opts.DrainTimeout},
		WatermillLogger(e.log.With("component", "watermill")))
	if err != nil {
		return nil, err
	}
	router.AddConsumerHandler("sluice-events:"+topic, topic, sub, e.eventsHandler(topic, buckets))
	w := &watch{key: keyOf(buckets), router: router, done: make(chan struct{})}
	runErr := make(chan error, 1)
	go func() { defer close(w.done); runErr <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
		return w, nil
	case err := <-runErr:
		return nil, err
	}
}

func keyOf(set map[string]bool) string {
	return strings.Join(slices.Sorted(maps.Keys(set)), "\x00")
}

// Reload replaces the running flows with next (loaded without problems,
// with the same services as the engine's): unchanged flows keep running
// untouched, changed and removed ones drain and stop, changed and added
// ones start. next's flows that are not used (unchanged ones) have their
// nodes closed. Nothing is acked twice or lost: a drained flow commits
// what it finished, and its new definition consumes the rest from the
// same consumer group. A renamed flow is a new consumer group (unless its
// trigger names one).
//
// When next cannot run (a duplicate name, a trigger this engine cannot
// run), nothing changes and the error says why. Flows that fail to start
// are in the report's Failed and in the error; the rest of the reload
// stands. Reload waits for the drained flows' runs, each bounded by its
// flow's timeout. It may be called from any goroutine once Run started.
func (e *Engine) Reload(ctx context.Context, next []*Flow) (Report, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	var rep Report
	if e.live == nil || e.stopping.Load() {
		discard(next...)
		return rep, errors.New("reload: the engine is not running")
	}
	if err := crossCheck(next).Err(); err != nil {
		discard(next...)
		return rep, err
	}
	for _, f := range next {
		if err := checkFlow(e.opts, f); err != nil {
			discard(next...)
			return rep, err
		}
	}
	e.flowsMu.RLock()
	old := maps.Clone(e.units)
	e.flowsMu.RUnlock()

	units := map[string]*unit{}
	var flows []*Flow
	var starting, stopping []*unit
	for _, f := range next {
		u, ok := old[f.Name]
		switch {
		case !ok:
			rep.Added = append(rep.Added, f.Name)
		case f.spec != "" && u.r.f.spec == f.spec:
			rep.Unchanged = append(rep.Unchanged, f.Name)
			units[f.Name] = u
			flows = append(flows, u.r.f)
			discard(f)
			continue
		default:
			rep.Changed = append(rep.Changed, f.Name)
			stopping = append(stopping, u)
		}
		nu := e.newUnit(f)
		units[f.Name] = nu
		flows = append(flows, f)
		starting = append(starting, nu)
	}
	for name, u := range old {
		if units[name] == nil {
			rep.Removed = append(rep.Removed, name)
			stopping = append(stopping, u)
		}
	}
	for _, l := range [][]string{rep.Added, rep.Changed, rep.Removed, rep.Unchanged} {
		slices.Sort(l)
	}
	if rep.Changes() == 0 {
		return rep, nil
	}
	if !e.opts.Broker.Features().Persistent {
		e.log.Warn("this broker keeps no messages: those published to a reloaded flow's topic while it restarts are lost")
	}
	warnRenamed(e, rep, old, units)
	e.setFlows(flows, units) // new routes first: requests go to the new definitions

	var wg sync.WaitGroup
	var stopErrs = make([]error, len(stopping))
	for i, u := range stopping {
		wg.Go(func() { stopErrs[i] = u.stop() })
	}
	wg.Wait()
	for i, u := range stopping {
		if stopErrs[i] != nil {
			u.r.log.Warn("stopping the flow's old definition", "error", stopErrs[i])
		}
		e.m.forget(u.r.f, units[u.r.f.Name])
	}
	if err := e.syncWatches(ctx); err != nil {
		e.log.Error("bucket watches after reload", "error", err)
	}

	streams, failed := e.startUnits(ctx, starting, true)
	var errs []error
	if len(failed) > 0 {
		rep.Failed = map[string]error{}
		for u, err := range failed {
			rep.Failed[u.r.f.Name] = err
			errs = append(errs, err)
		}
		var left []*Flow
		for _, f := range flows {
			if _, bad := rep.Failed[f.Name]; !bad {
				left = append(left, f)
			} else {
				delete(units, f.Name)
			}
		}
		e.setFlows(left, units)
		if err := e.syncWatches(ctx); err != nil {
			e.log.Error("bucket watches after reload", "error", err)
		}
	}
	if !e.opts.Broker.Features().Persistent {
		for _, started := range streams {
			select {
			case <-started:
			case <-ctx.Done():
			}
		}
	}
	return rep, errors.Join(errs...)
}

// warnRenamed warns of added flows that read the input topic of a removed
// one as another consumer group (a renamed flow): the new group starts at
// the oldest message the broker keeps, not where the old one stopped.
func warnRenamed(e *Engine, rep Report, old, cur map[string]*unit) {
	for _, a := range rep.Added {
		af := cur[a].r.f
		for _, r := range rep.Removed {
			rf := old[r].r.f
			if af.InputTopic() == rf.InputTopic() && af.Group() != rf.Group() {
				e.log.Warn("a flow added as another was removed reads the same topic as a new consumer group, from the oldest message kept; "+
					"to continue where the removed flow stopped, set its on.group", "flow", a, "removed_flow", r,
					"topic", af.InputTopic(), "group", af.Group(), "removed_group", rf.Group())
			}
		}
	}
}

// discard closes the nodes of flows that will not run.
func discard(flows ...*Flow) {
	for _, f := range flows {
		_ = closeNodes(allSteps(f))
	}
}

// forget deletes the metric series of a flow that stopped and of its
// steps that its new definition (cur's flow, nil when removed) lacks.
func (m *Metrics) forget(old *Flow, cur *unit) {
	if cur == nil {
		l := prometheus.Labels{"flow": old.Name}
		for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
			m.received, m.runs, m.runLatency, m.steps, m.stepLatency, m.attempts, m.published, m.calls, m.callErrors, m.coldStarts,
		} {
			v.DeletePartialMatch(l)
		}
		return
	}
	keep := map[[2]string]bool{}
	for _, s := range allSteps(cur.r.f) {
		keep[[2]string{s.ID, s.Type}] = true
	}
	for _, s := range allSteps(old) {
		if keep[[2]string{s.ID, s.Type}] {
			continue
		}
		l := prometheus.Labels{"flow": old.Name, "step": s.ID, "node": s.Type}
		m.steps.DeletePartialMatch(l)
		m.stepLatency.DeletePartialMatch(l)
		m.attempts.DeletePartialMatch(l)
	}
}

// specHash hashes a flow's YAML document: kinds, tags and values, not
// comments, styles or positions.
func specHash(n *yaml.Node) string {
	h := sha256.New()
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if n == nil || depth > 64 {
			return
		}
		if n.Kind == yaml.AliasNode {
			walk(n.Alias, depth+1)
			return
		}
		var b [8]byte
		binary.LittleEndian.PutUint32(b[:4], uint32(n.Kind))
		binary.LittleEndian.PutUint32(b[4:], uint32(len(n.Content)))
		h.Write(b[:])
		for _, s := range []string{n.ShortTag(), n.Value} {
			binary.LittleEndian.PutUint64(b[:], uint64(len(s)))
			h.Write(b[:])
			h.Write([]byte(s))
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return hex.EncodeToString(h.Sum(nil))
}
