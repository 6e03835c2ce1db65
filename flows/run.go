package flows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

// Metadata keys Sluice sets on messages it publishes.
const (
	MetaFlow        = "sluice_flow"
	MetaStep        = "sluice_step"
	MetaNode        = "sluice_node"
	MetaError       = "sluice_error"
	MetaAttempts    = "sluice_attempts"
	MetaFailedAt    = "sluice_failed_at"
	MetaSourceTopic = "sluice_source_topic"
	MetaSourceID    = "sluice_source_id"
	MetaInput       = "sluice_input" // the input's identity: message id, or bucket/key@etag
	// MetaFirstFailedAt is when the failing step first failed; MetaFailedAt
	// when it failed last.
	MetaFirstFailedAt   = "sluice_first_failed_at"
	MetaSourcePartition = "sluice_source_partition" // Kafka partition of the input
	MetaSourceOffset    = "sluice_source_offset"    // and its offset
	MetaRun             = "sluice_run"
)

// idSpace namespaces the deterministic ids of published messages.
var idSpace = uuid.MustParse("6f1c1d3e-8a4b-4e2f-9d7a-5c3b2a1f0e9d")

// derivedID is a stable id for the n-th message derived from an input, so
// a redelivered input publishes the same ids again.
func derivedID(inputID, what string) string {
	return uuid.NewSHA1(idSpace, []byte(inputID+"\x00"+what)).String()
}

// failure is a run's error with the step it happened in.
type failure struct {
	step        *Step
	attempts    int
	err         error
	first, last time.Time // the failing step's first and last failure
}

func (e *Engine) process(f *Flow, msg *message.Message) error {
	if err := e.Err(); err != nil {
		// Runs cannot be recorded: stop acking rather than lose track of
		// work; the input is redelivered once the database is writable.
		return err
	}
	start := time.Now()
	fm := e.fm[f]
	fm.received.Inc()
	env := e.envelope(f, msg, start)
	run := state.Run{ID: env.Run, Flow: f.Name, Trigger: f.triggerLabel, Input: msg.UUID, Attempts: 1, Started: start.UTC(),
		Steps: make([]state.StepRun, 0, len(f.Steps))}

	var fail *failure
	if f.Trigger.Kind == TriggerBucket {
		ev, err := decodeObjectEvent(msg.Payload)
		if err != nil {
			fail = &failure{err: nodes.Permanent(err)}
		} else {
			if !wants(f.Trigger, ev) {
				fm.runs["filtered"].Inc()
				return nil
			}
			run.Input = ev.Bucket + "/" + ev.Key + "@" + ev.ETag
			env.Event.Name = ev.Name
			if ev.Created() {
				env.Object = &storage.ObjectInfo{Bucket: ev.Bucket, Key: ev.Key, Size: ev.Size, ETag: ev.ETag, ContentType: ev.ContentType, Modified: ev.Time}
			}
			var p any
			_ = json.Unmarshal(msg.Payload, &p)
			env.Payload = p
		}
	} else if f.Trigger.Kind == TriggerHTTP {
		// A queued request: its id is the run id the client was given.
		env.Run, run.ID = msg.UUID, msg.UUID
		env.Event.Name = "http"
		if err := httpEnvelope(env, msg); err != nil {
			fail = &failure{err: nodes.Permanent(err)}
		}
	} else {
		setMessage(env, msg)
	}

	if fail == nil && e.opts.State != nil && !e.opts.NoLedger {
		// Redelivered after its run completed (a crash between the
		// completion commit and the ack, a rebalance, a repeated bucket
		// event): ack it without running again.
		c, done, err := e.opts.State.Completed(e.hardCtx, f.Name, run.Input)
		if err != nil {
			return err // cannot tell: leave it unacked, it comes back
		}
		if done {
			if run.ID == c.Run { // a queued HTTP request's run id is its message id
				run.ID += "-duplicate"
			}
			run.Status, run.Error = state.StatusDuplicate, "completed by run "+c.Run+" ("+c.Status+")"
			e.record(run)
			fm.runs[run.Status].Inc()
			return nil
		}
	}

	ctx, cancel := context.WithTimeout(e.hardCtx, f.Timeout)
	defer cancel()
	if fail == nil {
		fail, _ = e.runSteps(ctx, f, f.Steps, env, &run)
	}
	if fail == nil {
		if err := e.publishOutputs(f, msg.UUID, env); err != nil {
			fail = &failure{attempts: 1, err: fmt.Errorf("publish outputs: %w", err)}
		}
	}
	run.Duration = time.Since(start)
	in, out := env.Bytes()
	run.BytesIn, run.BytesOut = int64(len(msg.Payload))+in, out
	if fail == nil {
		for _, o := range env.Outputs() {
			run.BytesOut += int64(len(o.Payload))
		}
	}
	fm.runLatency.Observe(run.Duration.Seconds())
	if fail == nil && f.Trigger.Kind == TriggerHTTP {
		var res nodes.Response
		if res, fail = responseOf(env); fail == nil {
			e.answer(&run, res)
		}
	}
	if fail == nil {
		run.Status = state.StatusSucceeded
		status, err := e.complete(run)
		if err != nil {
			return err
		}
		fm.runs[status].Inc()
		return nil
	}

	run.Error = fail.err.Error()
	if fail.step != nil {
		run.Step = fail.step.ID
	}
	run.Attempts = max(fail.attempts, 1)
	if errors.Is(fail.err, context.Canceled) && e.hardCtx.Err() != nil {
		// Cancelled by shutdown: not the input's fault; redeliver it.
		run.Status = state.StatusFailed
		e.record(run)
		fm.runs[run.Status].Inc()
		return fail.err
	}
	log := e.log.With("flow", f.Name, "run", env.Run, "input", msg.UUID)
	if err := e.deadLetter(f, msg, run.Input, fail); err != nil {
		log.Error("dead-letter publish failed; the input will be redelivered", "error", err, "cause", fail.err)
		run.Status = state.StatusFailed
		run.Error += "; dead-letter publish failed: " + err.Error()
		e.record(run)
		fm.runs[run.Status].Inc()
		return err
	}
	log.Warn("run failed; input sent to the dead-letter topic", "step", run.Step, "error", fail.err,
		"attempts", run.Attempts, "dead_letter", f.DeadLetter)
	run.Status = state.StatusDeadLettered
	if f.Trigger.Kind == TriggerHTTP {
		e.answer(&run, errorResponse(fail, f.Timeout, run.ID))
	}
	status, err := e.complete(run)
	if err != nil {
		return err
	}
	fm.runs[status].Inc()
	return nil
}

// envelope starts a message's envelope.
func (e *Engine) envelope(f *Flow, msg *message.Message, start time.Time) *nodes.Envelope {
	env := nodes.NewEnvelope(e.opts.Store, f.MaxBody)
	env.Flow, env.Run = f.Name, watermill.NewULID()
	env.Event = nodes.Event{ID: msg.UUID, Topic: triggerTopic(f), Time: start.UTC()}
	for k, v := range msg.Metadata {
		env.Meta[k] = v
	}
	return env
}

// setMessage makes a topic message the envelope's payload (its JSON, or
// its text when it is not JSON) and body (its bytes).
func setMessage(env *nodes.Envelope, msg *message.Message) {
	var p any
	if err := json.Unmarshal(msg.Payload, &p); err == nil {
		env.Payload = p
	} else {
		env.Payload = string(msg.Payload)
	}
	env.SetBody(msg.Payload, msg.Metadata.Get("content_type"))
}

// complete records a finished run and, unless NoLedger, commits its
// input's completion before the input is acked. When that commit fails
// (disk full, database locked past its timeout) the input stays unacked
// and is redelivered: no input is acked without its completion. It returns
// the status recorded: a duplicate when a racing run completed it first.
func (e *Engine) complete(r state.Run) (string, error) {
	if e.opts.State == nil {
		return r.Status, nil
	}
	if e.opts.NoLedger {
		e.opts.State.Record(r)
		return r.Status, nil
	}
	dup, err := e.opts.State.Complete(e.hardCtx, r)
	if err != nil {
		e.log.Error("cannot record a completed run; its input will be redelivered", "flow", r.Flow, "run", r.ID, "input", r.Input, "error", err)
		return "", err
	}
	if dup {
		return state.StatusDuplicate, nil
	}
	return r.Status, nil
}

func (e *Engine) record(r state.Run) {
	if e.opts.State != nil {
		e.opts.State.Record(r)
	}
}

func triggerName(f *Flow) string {
	switch f.Trigger.Kind {
	case TriggerBucket:
		return f.Trigger.Bucket
	case TriggerTopic:
		return f.Trigger.Topic
	case TriggerHTTP:
		return f.Trigger.HTTPPath
	}
	return f.Trigger.Cron
}

func decodeObjectEvent(b []byte) (storage.ObjectEvent, error) {
	var ev storage.ObjectEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, fmt.Errorf("not an object event: %w", err)
	}
	if ev.Bucket == "" || ev.Key == "" || ev.Name == "" {
		return ev, errors.New("not an object event: bucket, key and event are required")
	}
	return ev, nil
}

// wants reports whether a bucket trigger's filters accept the event.
func wants(t Trigger, ev storage.ObjectEvent) bool {
	if ev.Bucket != t.Bucket || !strings.HasPrefix(ev.Key, t.Prefix) {
		return false
	}
	if len(t.Suffixes) > 0 {
		ok := false
		for _, s := range t.Suffixes {
			ok = ok || strings.HasSuffix(strings.ToLower(ev.Key), strings.ToLower(s))
		}
		if !ok {
			return false
		}
	}
	for _, want := range t.Events {
		if want == "created" && ev.Created() || want == "removed" && ev.Removed() {
			return true
		}
	}
	return false
}

// runSteps runs steps in order; a switch route to a branch continues in
// the branch, and ends the run there; a route to a topic ends the run
// (routed reports that).
func (e *Engine) runSteps(ctx context.Context, f *Flow, steps []*Step, env *nodes.Envelope, run *state.Run) (fail *failure, routed bool) {
	for _, s := range steps {
		if s.When != nil {
			ok, err := s.When.Bool(env.Vars())
			if err != nil {
				return &failure{step: s, attempts: 1, err: nodes.Permanent(fmt.Errorf("when: %w", err))}, false
			}
			if !ok {
				run.Steps = append(run.Steps, state.StepRun{ID: s.ID, Node: s.Type, Status: "skipped"})
				e.fm[f].steps[s].skipped.Inc()
				continue
			}
		}
		env.SetStep(s.ID)
		sr, firstFail, err := e.runStep(ctx, f, s, env)
		run.Steps = append(run.Steps, sr)
		if err != nil {
			return &failure{step: s, attempts: sr.Attempts, err: err, first: firstFail, last: time.Now()}, false
		}
		if r, ok := env.TakeRoute(); ok {
			if r.Topic != "" {
				data, err := env.PayloadJSON()
				if err != nil {
					return &failure{step: s, attempts: 1, err: nodes.Permanent(err)}, false
				}
				env.Emit(nodes.Output{Topic: r.Topic, Payload: data, Meta: env.Meta})
				return nil, true
			}
			return e.runSteps(ctx, f, f.Branches[r.Branch], env, run)
		}
	}
	return nil, false
}

// runStep runs one step with its retries, timeout and panic recovery.
// It also returns when the step first failed (zero if it never did).
func (e *Engine) runStep(ctx context.Context, f *Flow, s *Step, env *nodes.Envelope) (state.StepRun, time.Time, error) {
	start := time.Now()
	sr := state.StepRun{ID: s.ID, Node: s.Type}
	retry, bo := retryOf(f, s)
	var err error
	var firstFail time.Time
	for {
		sr.Attempts++
		err = e.callNode(ctx, s, env)
		if err != nil {
			e.fm[f].steps[s].failedAttempts.Inc()
			if firstFail.IsZero() {
				firstFail = time.Now()
			}
		}
		if err == nil || nodes.IsPermanent(err) || sr.Attempts >= retry.MaxAttempts || ctx.Err() != nil {
			break
		}
		wait := bo.NextBackOff()
		if retry.MaxElapsed > 0 && time.Since(start)+wait > retry.MaxElapsed {
			err = fmt.Errorf("gave up after %d attempts in %s (max_elapsed %s): %w", sr.Attempts, time.Since(start).Round(time.Millisecond), retry.MaxElapsed, err)
			break
		}
		e.log.Debug("step failed; retrying", "flow", f.Name, "step", s.ID, "attempt", sr.Attempts, "wait", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	e.finishStep(f, s, &sr, start, err)
	return sr, firstFail, err
}

// retryOf returns the retry policy of a step (its own, or its flow's) and
// a backoff following it.
func retryOf(f *Flow, s *Step) (Retry, *backoff.ExponentialBackOff) {
	retry := f.Retry
	if s.Retry != nil {
		retry = *s.Retry
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.RandomizationFactor = retry.Backoff, retry.MaxBackoff, 0.5
	return retry, bo
}

// finishStep completes a step's record, its retries included, and counts
// it in the step's metrics.
func (e *Engine) finishStep(f *Flow, s *Step, sr *state.StepRun, start time.Time, err error) {
	sr.Duration, sr.Status = time.Since(start), "succeeded"
	sm := e.fm[f].steps[s]
	if err != nil {
		sr.Status, sr.Error = "failed", err.Error()
		sm.failed.Inc()
	} else {
		sm.succeeded.Inc()
	}
	sm.latency.Observe(sr.Duration.Seconds())
}

// callNode calls the node once; a panic becomes a permanent error.
func (e *Engine) callNode(ctx context.Context, s *Step, env *nodes.Envelope) (err error) {
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("panic in node", "step", s.ID, "node", s.Type, "panic", r, "stack", string(debug.Stack()))
			err = nodes.Permanent(fmt.Errorf("panic in %s: %v", s.Type, r))
		}
	}()
	if err = s.Node.Process(ctx, env); err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		err = fmt.Errorf("step timed out: %w", err)
	}
	return err
}

// publishOutputs publishes the run's queued messages, one Publish per
// topic run (a batch is one commit on the embedded queue), with ids derived
// from the input so a redelivered input republishes the same ids.
func (e *Engine) publishOutputs(f *Flow, inputID string, env *nodes.Envelope) error {
	outs := env.Outputs()
	pub := e.opts.Broker.Publisher()
	for i := 0; i < len(outs); {
		j := i
		var batch []*message.Message
		for ; j < len(outs) && outs[j].Topic == outs[i].Topic; j++ {
			m := message.NewMessage(derivedID(inputID, f.Name+"/out/"+strconv.Itoa(j)), outs[j].Payload)
			for k, v := range outs[j].Meta {
				m.Metadata.Set(k, v)
			}
			m.Metadata.Set(MetaFlow, f.Name)
			m.Metadata.Set(MetaRun, env.Run)
			batch = append(batch, m)
		}
		if err := pub.Publish(outs[i].Topic, batch...); err != nil {
			return fmt.Errorf("topic %s: %w", outs[i].Topic, err)
		}
		e.fm[f].published.Add(float64(len(batch)))
		i = j
	}
	return nil
}

// deadLetter publishes the input, unchanged, to the flow's dead-letter
// topic, with why it failed in its metadata.
func (e *Engine) deadLetter(f *Flow, msg *message.Message, input string, fail *failure) error {
	dl := message.NewMessage(derivedID(msg.UUID, f.Name+"/dead-letter"), msg.Payload)
	for k, v := range msg.Metadata {
		dl.Metadata.Set(k, v)
	}
	dl.Metadata.Set(MetaFlow, f.Name)
	if fail.step != nil {
		dl.Metadata.Set(MetaStep, fail.step.ID)
		dl.Metadata.Set(MetaNode, fail.step.Type)
	}
	dl.Metadata.Set(MetaError, fail.err.Error())
	dl.Metadata.Set(MetaAttempts, strconv.Itoa(max(fail.attempts, 1)))
	last := fail.last
	if last.IsZero() {
		last = time.Now()
	}
	first := fail.first
	if first.IsZero() {
		first = last
	}
	dl.Metadata.Set(MetaFirstFailedAt, first.UTC().Format(time.RFC3339Nano))
	dl.Metadata.Set(MetaFailedAt, last.UTC().Format(time.RFC3339Nano))
	dl.Metadata.Set(MetaSourceTopic, triggerTopic(f))
	dl.Metadata.Set(MetaSourceID, msg.UUID)
	dl.Metadata.Set(MetaInput, input)
	if p, o, ok := brokers.Position(msg); ok {
		dl.Metadata.Set(MetaSourcePartition, strconv.Itoa(int(p)))
		dl.Metadata.Set(MetaSourceOffset, strconv.FormatInt(o, 10))
	}
	if err := e.opts.Broker.Publisher().Publish(f.DeadLetter, dl); err != nil {
		return err
	}
	e.fm[f].published.Inc()
	if e.opts.State != nil {
		// Kept for `sluice dlq`; the dead-letter topic has it in any case.
		rec := state.DeadLetter{
			ID: dl.UUID, Flow: f.Name, Error: fail.err.Error(), Attempts: max(fail.attempts, 1), Failed: time.Now().UTC(),
			SourceTopic: triggerTopic(f), SourceID: msg.UUID, Topic: f.DeadLetter, Payload: msg.Payload, Metadata: msg.Metadata,
		}
		if fail.step != nil {
			rec.Step, rec.Node = fail.step.ID, fail.step.Type
		}
		if err := e.opts.State.RecordDeadLetter(context.Background(), rec); err != nil {
			e.log.Error("recording the dead letter failed; it is on the dead-letter topic", "flow", f.Name, "error", err)
		}
	}
	return nil
}
