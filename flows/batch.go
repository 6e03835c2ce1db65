package flows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

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

// batchPartition fills batches from one partition's stream and hands them
// to the partition's writer, until the stream closes (the last, partial
// batch is then written) or the writer fails.
func (r *runner) batchPartition(s brokers.Stream) error {
	step, bn := batcher(r.f)
	limits := bn.BatchLimits()
	writes := make(chan *openBatch)
	werr := make(chan error, 1)
	go func() { werr <- r.batchWriter(step, s, writes) }()

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
				cur = r.openBatch(bn, msg)
				timer.Reset(limits.Wait)
			}
			if err := r.addToBatch(step, cur, msg); err != nil {
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

func (r *runner) openBatch(bn nodes.Batcher, first *message.Message) *openBatch {
	p, off, _ := brokers.Position(first)
	t, ok := brokers.Timestamp(first)
	if !ok {
		t = time.Now()
	}
	start := nodes.BatchStart{Flow: r.f.Name, Topic: r.f.InputTopic(), Partition: p, Offset: off, ID: first.UUID, Time: t.UTC(),
		Payload: first.Payload, Meta: first.Metadata}
	return &openBatch{batch: bn.NewBatch(start), start: start, opened: time.Now()}
}

// addToBatch runs the steps before the batcher on msg and adds its record.
// A message that fails is dead-lettered, as its own run; only a failed
// dead-letter publish (or shutdown) is returned: the stream then stops
// uncommitted and is consumed again.
func (r *runner) addToBatch(step *Step, ob *openBatch, msg *message.Message) error {
	ob.msgs++
	ob.last = msg
	ob.bytesIn += int64(len(msg.Payload))
	rec := msg.Payload
	var d *delivery // when steps ran before the batcher
	if len(r.f.Steps) > 1 || step.When != nil || brokers.Rejected(msg) != nil {
		var err error
		d = r.begin(msg)
		routed := r.exec(r.e.hardCtx, d, r.f.Steps[:len(r.f.Steps)-1])
		if d.fail == nil && routed {
			// A switch sent it to a topic: its run ends there, unarchived.
			ob.keepOutputs(d, false)
			return nil
		}
		if d.fail == nil && step.When != nil {
			ok, err := step.When.BoolContext(r.e.hardCtx, d.env.Vars())
			if err != nil {
				d.fail = &failure{step: step, attempts: 1, err: nodes.ExprError(fmt.Errorf("when: %w", err))}
			} else if !ok {
				r.m.steps[step].skipped.Inc()
				ob.keepOutputs(d, false)
				return nil
			}
		}
		if d.fail == nil {
			if rec, err = d.env.Record(msg.Payload); err != nil {
				d.fail = &failure{step: step, attempts: 1, err: nodes.Permanent(err)}
			}
		}
		if d.fail != nil {
			return r.deadLetterOne(d)
		}
	} else {
		r.m.received.Inc()
	}
	if err := ob.batch.Add(rec); err != nil {
		if d == nil {
			dl := nodes.NewDelivery(nil, 0)
			dl.Envelope().Run = watermill.NewULID()
			d = r.newDelivery(msg, dl, msg.UUID, time.Now())
		}
		d.fail = &failure{step: step, attempts: 1, err: nodes.Permanent(err)}
		return r.deadLetterOne(d)
	}
	ob.records = append(ob.records, msg)
	if d != nil {
		ob.keepOutputs(d, true)
	}
	return nil
}

// keepOutputs holds what a message's steps published until its batch is
// written (a message whose run failed publishes nothing).
func (ob *openBatch) keepOutputs(d *delivery, archived bool) {
	endRun(d) // its steps before the batcher are done; the batch's write is its own run
	if len(d.dl.Outputs()) > 0 {
		ob.outputs = append(ob.outputs, batchOutputs{input: d.msg.UUID, msg: d.msg, dl: d.dl, archived: archived})
	}
}

// deadLetterOne dead-letters one message of a batch flow, recorded as its
// own run.
func (r *runner) deadLetterOne(d *delivery) error {
	r.measure(d)
	if err := r.failed(d); err != nil {
		return fmt.Errorf("dead-letter %s: %w", d.msg.UUID, err)
	}
	r.record(d)
	return nil
}

// revokeGrace is how long a partition's writer keeps trying to write its
// batches after its stream ended. A revoked Kafka partition goes to
// another member once the rebalance times out (30s), which writes the same
// keys: a write landing after that could replace a newer object.
const revokeGrace = 20 * time.Second

// batchWriter writes a partition's batches in order until writes closes
// or one cannot be written and committed.
func (r *runner) batchWriter(step *Step, s brokers.Stream, writes <-chan *openBatch) error {
	ctx, cancel := context.WithCancel(r.e.hardCtx)
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
		if err := r.writeBatch(ctx, step, s, ob); err != nil {
			return err
		}
	}
	return nil
}

// writeBatch writes one batch, publishes its outputs and commits it.
func (r *runner) writeBatch(ctx context.Context, step *Step, s brokers.Stream, ob *openBatch) error {
	d := &delivery{run: state.Run{ID: watermill.NewULID(), Flow: r.f.Name, Trigger: r.label, Started: time.Now().UTC(), BytesIn: ob.bytesIn,
		Input: fmt.Sprintf("%s/%d/%d", ob.start.Topic, ob.start.Partition, ob.start.Offset), Status: state.StatusSucceeded}}
	deadLettered := false
	if len(ob.records) > 0 {
		var w nodes.Written
		c := &call{step: step, forever: true, do: func(ctx context.Context) (err error) {
			w, err = ob.batch.Flush(ctx)
			return err
		}}
		err := r.step(ctx, c)
		d.run.Steps, d.run.Attempts = []state.StepRun{c.rec}, c.rec.Attempts
		switch {
		case err == nil:
			d.run.BytesOut = w.Bytes
			d.run.Steps[0].Output = fmt.Sprintf("%s (%d records, %d bytes)", w.Location, len(ob.records), w.Bytes)
			r.log.Info("batch written", "object", w.Location, "records", len(ob.records),
				"messages", ob.msgs, "bytes", w.Bytes, "partition", ob.start.Partition, "offset", ob.start.Offset)
		case !nodes.IsPermanent(err):
			return err // gave up (shutdown, revoked): uncommitted, written again by the next consumer
		default:
			// The batch cannot be written: each message goes to the
			// dead-letter topic with the reason.
			d.run.Status, d.run.Step, d.run.Error, deadLettered = state.StatusDeadLettered, step.ID, err.Error(), true
			fail := &failure{step: step, attempts: c.rec.Attempts, err: err, last: time.Now()}
			for _, m := range ob.records {
				if err := r.e.deadLetter(r, m, m.UUID, fail); err != nil {
					return fmt.Errorf("dead-letter %s: %w", m.UUID, err)
				}
			}
			r.log.Error("batch cannot be written; its messages were dead-lettered", "records", len(ob.records), "error", err)
		}
	}
	for _, o := range ob.outputs {
		if o.archived && deadLettered {
			continue // their runs failed with the batch
		}
		if err := r.e.publishOutputs(r, o.input, o.msg, o.dl); err != nil {
			return fmt.Errorf("publish outputs of %s: %w", o.input, err)
		}
		for _, out := range o.dl.Outputs() {
			d.run.BytesOut += int64(len(out.Payload))
		}
	}
	if err := s.Commit(ctx, ob.last); err != nil {
		return fmt.Errorf("commit after %s: %w", ob.last.UUID, err)
	}
	if len(ob.records) == 0 && len(ob.outputs) == 0 {
		return nil // nothing written or published: no run to record
	}
	d.run.Duration = time.Since(ob.opened)
	r.record(d)
	return nil
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
	msg      *message.Message
	dl       *nodes.Delivery
	archived bool // the message's record is in the batch
}

// errWriterStopped ends a partition whose writer returned.
var errWriterStopped = errors.New("batch writer stopped")
