package flows

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// Batch flows: a flow whose last step is a nodes.Batcher (archive) is not a
// router handler. It consumes its topic as per-partition streams
// (brokers.Streamer): each message runs the steps before the batcher, its
// record is added to the partition's open batch, and a full batch (count,
// bytes, or time since its first message) goes to the partition's writer.
// The writer writes it (retrying transient failures for as long as it
// takes: the stream waits, nothing is committed), publishes the outputs the
// batch's messages queued, and only then commits the position after the
// batch's last message. One batch per partition is written at a time while
// the next one fills, so at most one object per partition is ever written
// but not committed, and a crash rewrites that object under the same key
// (named from the batch's first message) with whatever the new batch holds.
//
// A message that fails a step, or whose record the batcher refuses, is
// dead-lettered with its reason at once and is not in the batch. A batch
// the batcher refuses to write (a permanent error) dead-letters each of its
// messages. Each written batch is one run record; each dead-lettered
// message is one too.

// batcher returns a flow's batching step, its last one, if it has one.
func batcher(f *Flow) (*Step, nodes.Batcher) {
	if len(f.Steps) == 0 {
		return nil, nil
	}
	s := f.Steps[len(f.Steps)-1]
	b, ok := s.Node.(nodes.Batcher)
	if !ok {
		return nil, nil
	}
	return s, b
}

// streamFlow consumes a batch flow's topic until ctx ends; a stream that
// failed (its uncommitted messages are consumed again) restarts after a
// pause.
func (e *Engine) streamFlow(ctx context.Context, f *Flow) {
	st := e.opts.Broker.(brokers.Streamer) // checked by NewEngine
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = time.Second, 30*time.Second
	for ctx.Err() == nil {
		err := st.Stream(ctx, triggerTopic(f), flowGroup(f), func(s brokers.Stream) error {
			return e.streamPartition(f, s)
		})
		if err == nil || ctx.Err() != nil {
			if err != nil {
				e.log.Warn("batch stream stopped with an error", "flow", f.Name, "error", err)
			}
			bo.Reset()
			continue
		}
		wait := bo.NextBackOff()
		e.log.Error("batch stream failed; its uncommitted messages will be consumed again", "flow", f.Name, "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// openBatch is a batch being filled, then written.
type openBatch struct {
	batch   nodes.Batch
	start   nodes.BatchStart
	opened  time.Time
	last    *message.Message   // committed once the batch is written
	msgs    int                // messages consumed into it
	records []*message.Message // the messages whose records it holds
	outputs []batchOutputs     // messages published when it is written
	bytesIn int64
}

type batchOutputs struct {
	input    string
	env      *nodes.Envelope
	archived bool // the message's record is in the batch
}

// errWriterStopped ends a partition whose writer returned.
var errWriterStopped = errors.New("batch writer stopped")

// streamPartition fills batches from one partition's stream and hands them
// to the partition's writer, until the stream closes (the last, partial
// batch is then written) or the writer fails.
func (e *Engine) streamPartition(f *Flow, s brokers.Stream) error {
	step, bn := batcher(f)
	limits := bn.BatchLimits()
	writes := make(chan *openBatch)
	werr := make(chan error, 1)
	go func() { werr <- e.batchWriter(f, step, s, writes) }()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var cur *openBatch
	hand := func() error {
		select {
		case writes <- cur:
			cur = nil
			timer.Stop()
			return nil
		case err := <-werr:
			return errors.Join(errWriterStopped, err)
		}
	}
	msgs := s.Messages()
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				if cur != nil {
					if err := hand(); err != nil {
						return err
					}
				}
				close(writes)
				return <-werr
			}
			if cur == nil {
				cur = e.openBatch(f, bn, msg)
				timer.Reset(limits.Wait)
			}
			if err := e.addToBatch(f, step, cur, msg); err != nil {
				close(writes)
				return errors.Join(err, <-werr)
			}
			if cur.msgs >= limits.Count || cur.batch.Size() >= limits.Bytes {
				if err := hand(); err != nil {
					return err
				}
			}
		case <-timer.C:
			if cur != nil {
				if err := hand(); err != nil {
					return err
				}
			}
		case err := <-werr:
			return errors.Join(errWriterStopped, err)
		}
	}
}

func (e *Engine) openBatch(f *Flow, bn nodes.Batcher, first *message.Message) *openBatch {
	p, off, _ := brokers.Position(first)
	t, ok := brokers.Timestamp(first)
	if !ok {
		t = time.Now()
	}
	start := nodes.BatchStart{Flow: f.Name, Topic: triggerTopic(f), Partition: p, Offset: off, ID: first.UUID, Time: t.UTC(),
		Payload: first.Payload, Meta: first.Metadata}
	return &openBatch{batch: bn.NewBatch(start), start: start, opened: time.Now()}
}

// addToBatch runs the steps before the batcher on msg and adds its record.
// A message that fails is dead-lettered; only a failed dead-letter publish
// is returned (the stream then stops uncommitted and is consumed again).
func (e *Engine) addToBatch(f *Flow, step *Step, ob *openBatch, msg *message.Message) error {
	fm := e.fm[f]
	fm.received.Inc()
	ob.msgs++
	ob.last = msg
	ob.bytesIn += int64(len(msg.Payload))
	rec := msg.Payload
	var env *nodes.Envelope // when steps ran before the batcher
	if len(f.Steps) > 1 || step.When != nil {
		start := time.Now()
		env = e.envelope(f, msg, start)
		setMessage(env, msg)
		run := state.Run{ID: env.Run, Flow: f.Name, Trigger: f.triggerLabel, Input: msg.UUID, Attempts: 1, Started: start.UTC()}
		rctx, cancel := context.WithTimeout(e.hardCtx, f.Timeout)
		fail, routed := e.runSteps(rctx, f, f.Steps[:len(f.Steps)-1], env, &run)
		cancel()
		if fail == nil && routed {
			// A switch sent it to a topic: its run ends there, unarchived.
			ob.keepOutputs(msg, env, false)
			return nil
		}
		if fail == nil && step.When != nil {
			ok, err := step.When.Bool(env.Vars())
			if err != nil {
				fail = &failure{step: step, attempts: 1, err: nodes.Permanent(fmt.Errorf("when: %w", err))}
			} else if !ok {
				fm.steps[step].skipped.Inc()
				ob.keepOutputs(msg, env, false)
				return nil
			}
		}
		if fail != nil {
			return e.deadLetterRecord(f, msg, run, fail)
		}
		if s, isText := env.Payload.(string); isText {
			rec = []byte(s)
		} else {
			var err error
			if rec, err = env.PayloadJSON(); err != nil {
				return e.deadLetterRecord(f, msg, run, &failure{step: step, attempts: 1, err: nodes.Permanent(err)})
			}
		}
	}
	if err := ob.batch.Add(rec); err != nil {
		run := state.Run{ID: watermill.NewULID(), Flow: f.Name, Trigger: f.triggerLabel, Input: msg.UUID, Attempts: 1, Started: time.Now().UTC()}
		return e.deadLetterRecord(f, msg, run, &failure{step: step, attempts: 1, err: nodes.Permanent(err)})
	}
	ob.records = append(ob.records, msg)
	if env != nil {
		ob.keepOutputs(msg, env, true)
	}
	return nil
}

// keepOutputs holds what a message's steps published until its batch is
// written (a message whose run failed publishes nothing).
func (ob *openBatch) keepOutputs(msg *message.Message, env *nodes.Envelope, archived bool) {
	if len(env.Outputs()) > 0 {
		ob.outputs = append(ob.outputs, batchOutputs{input: msg.UUID, env: env, archived: archived})
	}
}

// deadLetterRecord dead-letters one message of a batch flow and records it
// as a dead-lettered run.
func (e *Engine) deadLetterRecord(f *Flow, msg *message.Message, run state.Run, fail *failure) error {
	if err := e.deadLetter(f, msg, msg.UUID, fail); err != nil {
		return fmt.Errorf("dead-letter %s: %w", msg.UUID, err)
	}
	run.Status, run.Error, run.Attempts = state.StatusDeadLettered, fail.err.Error(), max(fail.attempts, 1)
	if fail.step != nil {
		run.Step = fail.step.ID
	}
	run.Duration = time.Since(run.Started)
	e.record(run)
	e.fm[f].runs[run.Status].Inc()
	e.log.Warn("message dead-lettered", "flow", f.Name, "input", msg.UUID, "step", run.Step, "error", fail.err, "dead_letter", f.DeadLetter)
	return nil
}

// revokeGrace is how long a partition's writer keeps trying to write its
// batches after its stream ended. A revoked Kafka partition goes to
// another member once the rebalance times out (30s), which writes the same
// keys: a write landing after that could replace a newer object.
const revokeGrace = 20 * time.Second

// batchWriter writes a partition's batches in order until writes closes
// or one cannot be written and committed.
func (e *Engine) batchWriter(f *Flow, step *Step, s brokers.Stream, writes <-chan *openBatch) error {
	ctx, cancel := context.WithCancel(e.hardCtx)
	defer cancel()
	stop := context.AfterFunc(s.Context(), func() {
		t := time.NewTimer(revokeGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	})
	defer stop()
	for ob := range writes {
		if err := e.writeBatch(ctx, f, step, s, ob); err != nil {
			return err
		}
	}
	return nil
}

// writeBatch writes one batch, publishes its outputs and commits it.
func (e *Engine) writeBatch(ctx context.Context, f *Flow, step *Step, s brokers.Stream, ob *openBatch) error {
	fm := e.fm[f]
	start := time.Now()
	run := state.Run{ID: watermill.NewULID(), Flow: f.Name, Trigger: f.triggerLabel, Started: start.UTC(), BytesIn: ob.bytesIn,
		Input: fmt.Sprintf("%s/%d/%d", ob.start.Topic, ob.start.Partition, ob.start.Offset)}
	status := state.StatusSucceeded
	deadLettered := false
	if len(ob.records) > 0 {
		sr, w, err := e.flush(ctx, f, step, ob.batch)
		run.Steps = []state.StepRun{sr}
		run.Attempts = sr.Attempts
		switch {
		case err == nil:
			run.BytesOut = w.Bytes
			run.Steps[0].Output = fmt.Sprintf("%s (%d records, %d bytes)", w.Location, len(ob.records), w.Bytes)
			e.log.Info("batch written", "flow", f.Name, "object", w.Location, "records", len(ob.records),
				"messages", ob.msgs, "bytes", w.Bytes, "partition", ob.start.Partition, "offset", ob.start.Offset)
		case !nodes.IsPermanent(err):
			return err // gave up (shutdown, revoked): uncommitted, written again by the next consumer
		default:
			// The batch cannot be written: each message goes to the
			// dead-letter topic with the reason.
			status, run.Step, run.Error, deadLettered = state.StatusDeadLettered, step.ID, err.Error(), true
			fail := &failure{step: step, attempts: sr.Attempts, err: err, last: time.Now()}
			for _, m := range ob.records {
				if err := e.deadLetter(f, m, m.UUID, fail); err != nil {
					return fmt.Errorf("dead-letter %s: %w", m.UUID, err)
				}
			}
			e.log.Error("batch cannot be written; its messages were dead-lettered", "flow", f.Name, "records", len(ob.records), "error", err)
		}
	}
	for _, o := range ob.outputs {
		if o.archived && deadLettered {
			continue // their runs failed with the batch
		}
		if err := e.publishOutputs(f, o.input, o.env); err != nil {
			return fmt.Errorf("publish outputs of %s: %w", o.input, err)
		}
		for _, out := range o.env.Outputs() {
			run.BytesOut += int64(len(out.Payload))
		}
	}
	if err := s.Commit(ctx, ob.last); err != nil {
		return fmt.Errorf("commit after %s: %w", ob.last.UUID, err)
	}
	if len(ob.records) == 0 && len(ob.outputs) == 0 {
		return nil // nothing written or published: no run to record
	}
	run.Status, run.Duration = status, time.Since(start)
	e.record(run)
	fm.runs[status].Inc()
	fm.runLatency.Observe(time.Since(ob.opened).Seconds())
	return nil
}

// flush writes a batch, retrying transient failures with the step's (or
// the flow's) backoff for as long as it takes, until ctx gives up.
func (e *Engine) flush(ctx context.Context, f *Flow, step *Step, b nodes.Batch) (state.StepRun, nodes.Written, error) {
	start := time.Now()
	sr := state.StepRun{ID: step.ID, Node: step.Type}
	_, bo := retryOf(f, step) // attempts are not limited: nothing is committed meanwhile
	var w nodes.Written
	var err error
	for {
		sr.Attempts++
		w, err = e.flushOnce(ctx, f, step, b)
		if err != nil {
			e.fm[f].steps[step].failedAttempts.Inc()
		}
		if err == nil || nodes.IsPermanent(err) || ctx.Err() != nil {
			break
		}
		wait := bo.NextBackOff()
		e.log.Warn("batch write failed; retrying (nothing is committed meanwhile)", "flow", f.Name, "step", step.ID,
			"attempt", sr.Attempts, "wait", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	e.finishStep(f, step, &sr, start, err)
	return sr, w, err
}

// flushOnce calls Flush once, bounded by the step's timeout (the flow's
// run timeout by default); a panic is a permanent error.
func (e *Engine) flushOnce(ctx context.Context, f *Flow, step *Step, b nodes.Batch) (w nodes.Written, err error) {
	timeout := step.Timeout
	if timeout <= 0 {
		timeout = f.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("panic in node", "step", step.ID, "node", step.Type, "panic", r, "stack", string(debug.Stack()))
			err = nodes.Permanent(fmt.Errorf("panic in %s: %v", step.Type, r))
		}
	}()
	return b.Flush(ctx)
}
