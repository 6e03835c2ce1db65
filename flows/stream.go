package flows

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// Streams: on a broker that streams (brokers.Streamer: the embedded queue,
// Kafka, mem), a flow consumes its input topic as ordered per-partition
// streams whose position it commits itself. A flow ending in a batcher
// fills batches (batch.go); any other flow takes windows: the messages
// that are ready, up to windowMax, run (in order, or across
// `concurrency` lanes keeping per-key order), and are settled together —
// outputs published in one batch per topic, dead letters published,
// completions committed in one transaction — before the position after
// the window's last message is committed. Every guarantee of a single
// message holds: effects before the commit, the ledger before the
// commit, per-key order, one dead letter per failing message.

// windowMax bounds a window: what one settle publishes and commits.
const windowMax = 512

// streamed reports whether the flow consumes its input topic as streams
// rather than as a router handler: when the broker streams, except sync
// HTTP flows (run in the request).
func (r *runner) streamed() bool {
	if s, _ := batcher(r.f); s != nil {
		return true
	}
	if h := r.f.Trigger.HTTP; h != nil && h.Mode == "sync" {
		return false
	}
	_, ok := r.e.opts.Broker.(brokers.Streamer)
	return ok && !r.e.opts.NoStreams
}

// stream consumes the flow's input topic as per-partition streams until
// ctx ends; a stream that failed (its uncommitted messages are consumed
// again) restarts after a pause.
//
// started is closed once a first partition's stream is running (on mem,
// whose messages are lost if nobody subscribed, Ready waits for it).
func (r *runner) stream(ctx context.Context, started chan<- struct{}) {
	st := r.e.opts.Broker.(brokers.Streamer) // checked by streamed
	run := r.windowPartition
	if s, _ := batcher(r.f); s != nil {
		run = r.batchPartition
	}
	var once sync.Once
	partition := func(s brokers.Stream) error {
		once.Do(func() { close(started) })
		return run(s)
	}
	_, _ = retry(ctx, forever, func() error {
		err := st.Stream(ctx, r.f.InputTopic(), r.f.Group(), partition)
		if err != nil && ctx.Err() != nil {
			r.log.Warn("stream stopped with an error", "error", err)
			return nil
		}
		if err == nil && ctx.Err() == nil {
			return errStreamEnded
		}
		return err
	}, func(err error, wait time.Duration) {
		r.log.Error("stream failed; its uncommitted messages will be consumed again", "error", err, "retry_in", wait)
	})
}

// errStreamEnded restarts a stream that ended while the engine runs.
var errStreamEnded = errors.New("the stream ended")

// windowPartition runs one partition's messages window by window until
// the stream ends; the window under way is settled and committed first.
func (r *runner) windowPartition(s brokers.Stream) error {
	msgs := s.Messages()
	window := make([]*message.Message, 0, windowMax)
	for {
		if s.Context().Err() != nil {
			return nil // stopping, or revoked: the rest is consumed again
		}
		var first *message.Message
		select {
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			first = m
		case <-s.Context().Done():
			return nil
		}
		window = append(window[:0], first)
	more:
		for len(window) < windowMax {
			select {
			case m, ok := <-msgs:
				if !ok {
					break more
				}
				window = append(window, m)
			default:
				break more
			}
		}
		if err := r.runWindow(s, window); err != nil {
			return err
		}
	}
}

// runWindow runs and settles a window of one partition's messages, then
// commits the position after its last one. An error leaves the window
// uncommitted: the stream stops and its messages are consumed again.
func (r *runner) runWindow(s brokers.Stream, msgs []*message.Message) error {
	// While runs cannot be recorded (the state database is locked or
	// full), wait: nothing is taken that could not be completed.
	if _, err := retry(s.Context(), whileUnwritable, r.e.Err, nil); err != nil {
		return err
	}
	ds := make([]*delivery, len(msgs))
	// Decoding has no order to keep: spread it over the flow's lanes.
	lanes := min(r.f.Concurrency, len(msgs)/64+1)
	if lanes <= 1 {
		for i, m := range msgs {
			ds[i] = r.begin(m)
		}
	} else {
		var wg sync.WaitGroup
		per := (len(msgs) + lanes - 1) / lanes
		for from := 0; from < len(msgs); from += per {
			to := min(from+per, len(msgs))
			wg.Go(func() {
				for i := from; i < to; i++ {
					ds[i] = r.begin(msgs[i])
				}
			})
		}
		wg.Wait()
	}
	if err := r.checkLedger(ds); err != nil {
		return err
	}
	r.execWindow(ds)
	if err := r.settleWindow(s.Context(), ds); err != nil {
		return err
	}
	if err := s.Commit(r.e.hardCtx, msgs[len(msgs)-1]); err != nil {
		return fmt.Errorf("commit after %s: %w", msgs[len(msgs)-1].UUID, err)
	}
	return nil
}

var laneSeed = maphash.MakeSeed()

// execWindow runs the window's deliveries: in order, or over the flow's
// concurrency in lanes, a message's lane chosen by its partition key (so
// messages of one key keep their order) or, without one, in turn.
func (r *runner) execWindow(ds []*delivery) {
	lanes := min(r.f.Concurrency, len(ds))
	if lanes <= 1 {
		for _, d := range ds {
			r.exec(r.e.hardCtx, d, r.f.Steps)
		}
		return
	}
	byLane := make([][]*delivery, lanes)
	for i, d := range ds {
		lane := i % lanes
		if k := d.msg.Metadata.Get(brokers.MetaPartitionKey); k != "" {
			lane = int(maphash.String(laneSeed, k) % uint64(lanes))
		}
		byLane[lane] = append(byLane[lane], d)
	}
	var wg sync.WaitGroup
	for _, l := range byLane {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, d := range l {
				r.exec(r.e.hardCtx, d, r.f.Steps)
			}
		}()
	}
	wg.Wait()
}

// settleWindow is settle for a window: outputs of the successful runs
// published together (one Publish per topic), dead letters published,
// completions committed in one transaction, runs recorded and counted.
func (r *runner) settleWindow(ctx context.Context, ds []*delivery) error {
	var outs []topicMessage
	for _, d := range ds {
		if d.skip || d.done || d.fail != nil {
			continue
		}
		outs = append(outs, outputMessages(r, d.run.Input, d.msg, d.dl)...)
	}
	if err := r.e.publish(r, byTopic(outs)); err != nil {
		if !nodes.IsPermanent(err) {
			return fmt.Errorf("publish outputs: %w", err)
		}
		// Some output cannot be published at all (a templated topic no
		// broker carries, a message over the limit): publish run by run,
		// failing the runs whose outputs cannot be.
		for _, d := range ds {
			if d.skip || d.done || d.fail != nil {
				continue
			}
			if err := r.e.publishOutputs(r, d.run.Input, d.msg, d.dl); err != nil {
				if !nodes.IsPermanent(err) {
					return fmt.Errorf("publish outputs: %w", err)
				}
				d.fail = &failure{attempts: 1, err: fmt.Errorf("publish outputs: %w", err)}
			}
		}
	}
	ans, answers := r.adapter.(answerer)
	var dead []topicMessage
	var failed []*delivery
	for _, d := range ds {
		if d.skip || d.done {
			continue
		}
		r.measure(d)
		if answers && d.fail == nil {
			ans.prepare(d)
		}
		if d.fail == nil {
			d.run.Status = state.StatusSucceeded
			continue
		}
		fail := d.fail
		d.run.Error, d.run.Attempts = fail.err.Error(), max(fail.attempts, 1)
		if fail.step != nil {
			d.run.Step = fail.step.ID
		}
		if errors.Is(fail.err, context.Canceled) && r.e.hardCtx.Err() != nil {
			return fail.err // cancelled by shutdown: consume the window again
		}
		d.run.Status = state.StatusDeadLettered
		dead = append(dead, topicMessage{topic: r.f.DeadLetter, msg: deadLetterMessage(r, d.msg, d.run.Input, fail)})
		failed = append(failed, d)
	}
	if len(dead) > 0 {
		if err := r.e.publish(r, dead); err != nil {
			return fmt.Errorf("dead letters: %w", err)
		}
		for i, d := range failed {
			r.e.keepDeadLetter(r, d.msg, dead[i].msg, d.fail)
			r.log.Warn("run failed; input sent to the dead-letter topic", "run", d.run.ID, "input", d.run.Input, "step", d.run.Step,
				"error", d.fail.err, "attempts", d.run.Attempts, "dead_letter", r.f.DeadLetter)
		}
	}
	var done []*delivery
	for _, d := range ds {
		if d.skip || d.done {
			continue
		}
		if answers {
			ans.answer(d)
		}
		done = append(done, d)
	}
	return r.completeAll(ctx, done)
}

// byTopic orders messages by topic, keeping their order within a topic,
// so each topic is one Publish.
func byTopic(msgs []topicMessage) []topicMessage {
	if len(msgs) < 2 {
		return msgs
	}
	order := map[string]int{}
	var topics [][]topicMessage
	for _, m := range msgs {
		i, ok := order[m.topic]
		if !ok {
			i = len(topics)
			order[m.topic] = i
			topics = append(topics, nil)
		}
		topics[i] = append(topics[i], m)
	}
	if len(topics) == 1 {
		return msgs
	}
	out := make([]topicMessage, 0, len(msgs))
	for _, t := range topics {
		out = append(out, t...)
	}
	return out
}

// whileUnwritable waits for the state database to take writes again:
// effects are published, the window's completions are retried (and new
// windows wait) until it does, or the stream ends.
var whileUnwritable = Retry{Backoff: 50 * time.Millisecond, MaxBackoff: time.Second}

// completeAll is complete for a window's runs: one commit, retried while
// the state database refuses writes (the window stays uncommitted).
func (r *runner) completeAll(ctx context.Context, ds []*delivery) error {
	if len(ds) == 0 {
		return nil
	}
	st := r.e.opts.State
	if st == nil || r.e.opts.NoLedger {
		for _, d := range ds {
			r.record(d)
		}
		return nil
	}
	runs := make([]state.Run, len(ds))
	for i, d := range ds {
		runs[i] = d.run
	}
	var dups []bool
	_, err := retry(ctx, whileUnwritable, func() (err error) {
		dups, err = st.CompleteAll(r.e.hardCtx, runs)
		return err
	}, func(err error, wait time.Duration) {
		r.log.Error("cannot record completed runs; retrying (nothing is committed meanwhile)", "runs", len(runs), "error", err, "wait", wait)
	})
	if err != nil {
		return err // the stream ended first: its messages are consumed again
	}
	for i, d := range ds {
		if dups[i] {
			d.run.Status = state.StatusDuplicate
		}
		r.count(d)
	}
	return nil
}
