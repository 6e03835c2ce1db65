package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/internal/poison"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// runner runs one flow: it holds the flow, its metrics, its logger, its
// trigger's adapter and its step handler, and every run of the flow —
// from a topic, a bucket, a schedule, an HTTP request or a batch — goes
// through begin, exec and settle (or settleWindow) here.
type runner struct {
	e       *Engine
	f       *Flow
	m       *flowMetrics
	log     *slog.Logger
	label   string        // "topic:orders", for run records
	adapter adapter       // decodes deliveries of the flow's input topic
	step    handler       // one step's call, wrapped
	slots   chan struct{} // sync HTTP runs in progress, up to the flow's concurrency
	tr      trace.Tracer  // nil: runs are not traced (see trace.go)
}

func newRunner(e *Engine, f *Flow) *runner {
	r := &runner{e: e, f: f, m: e.m.forFlow(f), log: e.log.With("flow", f.Name), label: f.Trigger.label()}
	r.adapter = adapterFor(r)
	r.slots = make(chan struct{}, max(f.Concurrency, 1))
	r.tr = tracerOf(e.opts)
	r.step = r.stepHandler()
	return r
}

// failure is a run's error with the step it happened in.
type failure struct {
	step        *Step
	attempts    int
	err         error
	first, last time.Time // the failing step's first and last failure
}

// delivery is one input on its way through a run.
type delivery struct {
	msg  *message.Message // what the broker delivered; nil for a sync HTTP request
	dl   *nodes.Delivery  // the engine's side of env
	env  *nodes.Envelope  // what the steps see
	run  state.Run
	fail *failure
	// skip: the trigger filters the input out; done: its run completed
	// before (a redelivery), recorded as a duplicate. Neither runs.
	skip, done bool
	// unsafe: a step's abandoned call may still be using env, which is
	// then not read again.
	unsafe bool
	res    *nodes.Response // an HTTP run's answer, once prepared
	span   trace.Span      // the run's span while it runs; nil when not traced
	start  time.Time       // run.Started with its monotonic reading (UTC drops it)
}

// begin decodes a delivered message into a delivery. Deliveries that
// will run must then be looked up in the ledger (checkLedger).
func (r *runner) begin(msg *message.Message) *delivery {
	start := time.Now()
	r.m.received.Inc()
	dl := nodes.NewDelivery(r.e.opts.Store, r.f.MaxBody)
	env := dl.Envelope()
	env.Flow, env.Run = r.f.Name, newRunID(start)
	env.Event = nodes.Event{ID: msg.UUID, Topic: r.f.InputTopic(), Time: start.UTC()}
	for k, v := range msg.Metadata {
		env.Meta[k] = v
	}
	d := r.newDelivery(msg, dl, msg.UUID, start)
	input, skip, err := r.adapter.decode(msg, env)
	if rerr := brokers.Rejected(msg); rerr != nil {
		// Delivered without its payload (over the broker's limit): never
		// run on the empty payload.
		input, skip, err = msg.UUID, false, rerr
	}
	switch {
	case err != nil:
		d.fail = &failure{attempts: 1, err: nodes.Permanent(err)}
	case skip:
		d.skip = true
		r.m.runs["filtered"].Inc()
		r.observe(d)
	case hops(msg) >= r.e.opts.MaxHops:
		d.run.Input = input
		d.fail = &failure{attempts: 1, err: nodes.Permanent(fmt.Errorf(
			"the message has passed through %d flows (%s): a loop between flows? (the limit is %d)", hops(msg), MetaHops, r.e.opts.MaxHops))}
	default:
		d.run.Input = input
	}
	if !d.skip {
		d.run.Parent = parentRun(msg, env)
		if r.tr != nil {
			var carrier propagation.TextMapCarrier
			if r.f.Trigger.Kind != TriggerBucket { // an object event starts a new trace
				carrier = propagation.MapCarrier(msg.Metadata)
			}
			r.startRun(r.e.hardCtx, d, carrier, trace.SpanKindConsumer)
		}
	}
	return d
}

// checkLedger looks the deliveries' inputs up in the completion ledger,
// when the engine keeps one: a redelivery of a completed input is
// recorded as a duplicate and does not run, nor does a second delivery of
// an input among ds. An error leaves the inputs unacked (the ledger
// cannot be read now).
func (r *runner) checkLedger(ds []*delivery) error {
	if err := r.lookUpCompleted(ds); err != nil {
		return err
	}
	r.recordCompleted(ds)
	r.firstOfEach(ds)
	return nil
}

// lookUpCompleted is checkLedger's ledger lookup alone: it marks the
// deliveries whose input was completed as duplicates, to be recorded by
// recordCompleted once the whole batch was looked up (a batch whose
// lookup fails is consumed again: nothing of it is recorded). ds may be
// any part of a batch, looked up at the same time as the others.
func (r *runner) lookUpCompleted(ds []*delivery) error {
	st := r.e.opts.State
	if st == nil || r.e.opts.NoLedger {
		return nil
	}
	inputs := make([]string, 0, len(ds))
	for _, d := range ds {
		if !d.skip && d.fail == nil {
			inputs = append(inputs, d.run.Input)
		}
	}
	if len(inputs) == 0 {
		return nil
	}
	done, err := st.CompletedAll(r.e.hardCtx, r.f.Name, inputs)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if c, ok := done[d.run.Input]; ok && !d.skip && d.fail == nil {
			d.done = true
			d.run.Status, d.run.Error = state.StatusDuplicate, "completed by run "+c.Run+" ("+c.Status+")"
		}
	}
	return nil
}

// recordCompleted records the duplicates lookUpCompleted found in ds.
func (r *runner) recordCompleted(ds []*delivery) {
	for _, d := range ds {
		if d.done {
			r.record(d)
		}
	}
}

// firstOfEach marks the second and later deliveries of an input among ds
// (published twice) as duplicates: the first runs.
func (r *runner) firstOfEach(ds []*delivery) {
	first := make(map[string]string, len(ds)) // input -> run, within ds
	for _, d := range ds {
		if d.skip || d.done || d.fail != nil {
			continue
		}
		if run, ok := first[d.run.Input]; ok {
			d.done = true
			d.run.Status, d.run.Error = state.StatusDuplicate, "delivered again while run "+run+" ran it"
			r.record(d)
			continue
		}
		first[d.run.Input] = d.run.ID
	}
}

// newDelivery starts a delivery's run record; every run has its own id.
func (r *runner) newDelivery(msg *message.Message, dl *nodes.Delivery, input string, start time.Time) *delivery {
	env := dl.Envelope()
	return &delivery{msg: msg, dl: dl, env: env, start: start, run: state.Run{ID: env.Run, Flow: r.f.Name, Trigger: r.label, Input: input,
		Attempts: 1, Started: start.UTC(), Steps: make([]state.StepRun, 0, len(r.f.Steps))}}
}

// exec runs steps on the delivery within the flow's run timeout (ctx may
// end it earlier), and reports whether a switch routed the run to a topic
// (which ends it).
func (r *runner) exec(ctx context.Context, d *delivery, steps []*Step) (routed bool) {
	if d.fail != nil || d.skip || d.done {
		return false
	}
	if d.span != nil {
		ctx = trace.ContextWithSpan(ctx, d.span)
	}
	ctx, stop := newRunContext(ctx, r.f.Timeout) // context.WithTimeout's semantics, its timer armed on demand
	defer stop()
	if d.msg == nil {
		d.fail, routed = r.runSteps(ctx, steps, d) // a request: never redelivered
		return routed
	}
	// Recorded as in flight while it runs: an input in flight each time
	// the process died is dead-lettered without running again.
	err := poison.Run(ctx, r.e.opts.Poison, r.e.opts.MaxCrashes, r.f.Name, d.run.Input, func(ctx context.Context) error {
		d.fail, routed = r.runSteps(ctx, steps, d)
		return nil
	})
	switch {
	case errors.Is(err, poison.ErrPoisoned):
		d.fail = &failure{attempts: 0, err: nodes.Permanent(err)}
	case err != nil:
		d.fail = &failure{attempts: 0, err: err} // waiting for a suspect input ended: try again later
	}
	return routed
}

// runSteps runs steps in order; a switch route to a branch continues in
// the branch, and ends the run there; a route to a topic ends the run
// (routed reports that).
func (r *runner) runSteps(ctx context.Context, steps []*Step, d *delivery) (fail *failure, routed bool) {
	env := d.env
	var c *call // reused from step to step unless an abandoned attempt holds it
	// next is the previous step's end (mono): this one's start. The
	// bookkeeping between two steps (sub-microsecond) counts in the second.
	var next time.Duration
	for _, s := range steps {
		if s.When != nil {
			next = 0 // the condition's time is not the step's
			ok, err := s.When.BoolContext(ctx, env.Vars())
			if err != nil {
				return &failure{step: s, attempts: 1, err: nodes.ExprError(fmt.Errorf("when: %w", err))}, false
			}
			if !ok {
				d.run.Steps = append(d.run.Steps, state.StepRun{ID: s.ID, Node: s.Type, Status: "skipped"})
				r.m.steps[s].skipped.Inc()
				continue
			}
		}
		d.dl.SetStep(s.ID)
		if c == nil || c.abandoned != nil {
			c = &call{step: s, dl: d.dl, start: next}
		} else {
			*c = call{step: s, dl: d.dl, start: next}
		}
		emitted := len(d.dl.Outputs())
		err := r.step(ctx, c)
		next = c.end
		c.rec.Wrote = d.dl.TakeWrites()
		d.run.Steps = append(d.run.Steps, c.rec)
		rec := &d.run.Steps[len(d.run.Steps)-1]
		if c.abandoned != nil {
			d.unsafe = true
		}
		if err != nil {
			return &failure{step: s, attempts: c.rec.Attempts, err: err, first: c.firstFail, last: time.Now()}, false
		}
		rt, hasRoute := d.dl.TakeRoute()
		if hasRoute && rt.Topic != "" {
			data, err := env.PayloadJSON()
			if err != nil {
				return &failure{step: s, attempts: 1, err: nodes.Permanent(err)}, false
			}
			env.Emit(nodes.Output{Topic: rt.Topic, Payload: data, Meta: env.Meta})
		}
		if outs := d.dl.Outputs(); len(outs) > emitted {
			for _, o := range outs[emitted:] {
				rec.Published = append(rec.Published, o.Topic)
			}
		}
		if hasRoute {
			if rt.End || rt.Topic != "" {
				return nil, true
			}
			return r.runSteps(ctx, r.f.Branches[rt.Branch], d)
		}
	}
	return nil, false
}

// measure completes the run record's duration and byte counts, once the
// run's outcome is known (d.fail).
func (r *runner) measure(d *delivery) {
	if d.start.IsZero() {
		d.start = d.run.Started
	}
	d.run.Duration = time.Since(d.start)
	if d.fail != nil {
		for i := range d.run.Steps {
			d.run.Steps[i].Published = nil // a failed run publishes nothing
		}
	}
	if d.msg != nil {
		d.run.BytesIn += int64(len(d.msg.Payload))
	}
	if d.unsafe {
		return
	}
	in, out := d.dl.Bytes()
	d.run.BytesIn += in
	d.run.BytesOut += out
	if d.fail == nil {
		for _, o := range d.dl.Outputs() {
			d.run.BytesOut += int64(len(o.Payload))
		}
	}
}

// settle ends a delivered message's run: its outputs are published, or
// the input dead-lettered with the reason; the completion is committed
// (before the caller acks); the run is recorded and counted. A non-nil
// error means the input must not be acked: it is redelivered.
func (r *runner) settle(d *delivery) error {
	if d.skip || d.done {
		return nil
	}
	if d.fail == nil {
		if err := r.e.publishOutputs(r, d.run.Input, d.msg, d.dl); err != nil {
			d.fail = &failure{attempts: 1, err: fmt.Errorf("publish outputs: %w", err)}
		}
	}
	r.measure(d)
	ans, answers := r.adapter.(answerer)
	if answers && d.fail == nil {
		ans.prepare(d) // may fail: an answer that cannot be encoded
	}
	if d.fail == nil {
		d.run.Status = state.StatusSucceeded
	} else if err := r.failed(d); err != nil {
		return err
	}
	if answers {
		ans.answer(d)
	}
	return r.complete(d)
}

// failed handles a failed run: cancelled by shutdown, it is recorded and
// its input left for redelivery (the error); otherwise the input goes to
// the dead-letter topic with its reason. A dead letter that cannot be
// published is an error too.
func (r *runner) failed(d *delivery) error {
	fail := d.fail
	d.run.Error = fail.err.Error()
	if fail.step != nil {
		d.run.Step = fail.step.ID
	}
	d.run.Attempts = max(fail.attempts, 1)
	if errors.Is(fail.err, context.Canceled) && r.e.hardCtx.Err() != nil {
		// Cancelled by shutdown: not the input's fault; redeliver it.
		d.run.Status = state.StatusFailed
		r.record(d)
		return fail.err
	}
	if err := r.e.deadLetter(r, d.msg, d.run.Input, fail); err != nil {
		r.log.Error("dead-letter publish failed; the input will be redelivered", "run", d.run.ID, "input", d.run.Input, "error", err, "cause", fail.err)
		d.run.Status = state.StatusFailed
		d.run.Error += "; dead-letter publish failed: " + err.Error()
		r.record(d)
		return err
	}
	r.log.Warn("run failed; input sent to the dead-letter topic", "run", d.run.ID, "input", d.run.Input, "step", d.run.Step,
		"error", fail.err, "attempts", d.run.Attempts, "dead_letter", r.f.DeadLetter)
	d.run.Status = state.StatusDeadLettered
	return nil
}

// complete records a finished run and, unless the ledger is off, commits
// its input's completion before the input is acked. When that commit
// fails (disk full, database locked past its timeout) the input stays
// unacked and is redelivered: no input is acked without its completion.
func (r *runner) complete(d *delivery) error {
	r.recordOrNot(d)
	st := r.e.opts.State
	if st == nil || r.e.opts.NoLedger {
		r.record(d)
		return nil
	}
	dup, err := st.Complete(r.e.hardCtx, d.run)
	if err != nil {
		r.log.Error("cannot record a completed run; its input will be redelivered", "run", d.run.ID, "input", d.run.Input, "error", err)
		endRun(d)
		return err
	}
	if dup {
		d.run.Status = state.StatusDuplicate
	}
	r.count(d)
	return nil
}

// record writes the run record (batched), unless the flow keeps none of
// its kind, and counts it.
func (r *runner) record(d *delivery) {
	r.recordOrNot(d)
	if st := r.e.opts.State; st != nil {
		st.Record(d.run)
	}
	r.count(d)
}

// recordOrNot marks a finished run that leaves no record (state.Run's
// NoRecord): its flow records failures only, it succeeded (or was a
// duplicate of a run that did), and no step made a metered call (usage
// is summed from the records).
func (r *runner) recordOrNot(d *delivery) {
	if r.f.Record != RecordFailures || d.run.Status != state.StatusSucceeded && d.run.Status != state.StatusDuplicate {
		return
	}
	for _, s := range d.run.Steps {
		if len(s.Calls) > 0 {
			return
		}
	}
	d.run.NoRecord = true
}

// count counts a finished run in the flow's metrics.
func (r *runner) count(d *delivery) {
	if d.span != nil {
		endRun(d)
	}
	r.observe(d)
	r.m.runs[d.run.Status].Inc()
	if d.run.Status != state.StatusDuplicate {
		r.m.runLatency.Observe(d.run.Duration.Seconds())
	}
}

// handle is the router's handler of the flow: one message, one run. It
// acks the message itself once the run is settled, before the run stops
// counting as in flight, so a drained shutdown closes no subscriber
// between a finished run and its ack. (The router acks again: a no-op.)
func (r *runner) handle(msg *message.Message) error {
	if !r.e.enter() {
		return errDraining
	}
	defer r.e.leave()
	if err := r.e.Err(); err != nil {
		// Runs cannot be recorded: stop acking rather than lose track of
		// work; the input is redelivered once the database is writable.
		return err
	}
	d := r.begin(msg)
	if err := r.checkLedger([]*delivery{d}); err != nil {
		return err
	}
	r.exec(r.e.hardCtx, d, r.f.Steps)
	if err := r.settle(d); err != nil {
		return err
	}
	msg.Ack()
	return nil
}
