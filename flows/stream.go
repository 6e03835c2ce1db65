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

// windowPartition runs one partition's messages until the stream ends,
// through a pipeline: the loop takes the messages that are ready (up to
// windowMax), decodes them over the lanes and looks them up in the
// ledger at once, and hands each to its lane (by partition key, so a key
// keeps its order; `concurrency` lanes); lanes run their messages one
// after another while the loop reads on, up to maxInFlight messages
// ahead. Finished messages are settled in order, as a window: the longest
// finished prefix (up to windowMax), once it is windowMax/2 long or
// nothing else is in flight, handed to the settler, which settles windows
// one after another while the loop reads on. A slow message holds up the
// commit of what follows it, never the other lanes. When the stream ends,
// what is in flight finishes and is settled first.
func (r *runner) windowPartition(s brokers.Stream) error {
	p := &pipeline{r: r, s: s, done: make(chan *flight, maxInFlight)}
	p.start()
	defer p.stop()
	return p.run()
}

// maxInFlight bounds the messages a partition has taken but not settled.
const maxInFlight = 2 * windowMax

// pipeline is one partition's lanes and its messages in flight.
type pipeline struct {
	r     *runner
	s     brokers.Stream
	lanes []chan *flight
	done  chan *flight  // flights the lanes finished
	quit  chan struct{} // closed when the pipeline stops: queued flights are not run
	wg    sync.WaitGroup
	queue []*flight // taken, in order, not handed to the settler
	run1  int       // lanes that get keyless messages in turn
	// The settler settles windows in order while the loop reads on:
	// windows go to it on settling, settled ones come back on settled
	// (nil error) and it fails the pipeline on failed; inSettle counts
	// the messages handed to it and not back (they count as in flight).
	// Without a ledger to commit, settling is cheaper than handing a
	// window over: the loop settles itself and these are nil.
	settling    chan []*delivery
	settled     chan []*delivery
	failed      chan error
	inSettle    int
	settlerDone chan struct{}
	// taken maps the inputs in the queue to their runs: an input delivered
	// again before its run is settled (published twice) is a duplicate.
	taken map[string]string
}

// flight is one message in a pipeline.
type flight struct {
	d        *delivery
	finished bool
}

func (p *pipeline) start() {
	p.quit = make(chan struct{})
	if p.r.e.opts.State != nil && !p.r.e.opts.NoLedger {
		p.settling = make(chan []*delivery, settleAhead)
		p.settled = make(chan []*delivery, settleAhead)
		p.failed = make(chan error, 1)
		p.settlerDone = make(chan struct{})
		go p.settler()
	}
	p.lanes = make([]chan *flight, max(p.r.f.Concurrency, 1))
	for i := range p.lanes {
		ch := make(chan *flight, maxInFlight)
		p.lanes[i] = ch
		p.wg.Go(func() {
			for f := range ch {
				select {
				case <-p.quit: // the partition stopped: left for redelivery
				default:
					p.r.exec(p.r.e.hardCtx, f.d, p.r.f.Steps)
				}
				p.done <- f
			}
		})
	}
}

// stop ends the lanes: runs under way finish, queued ones are not run
// (nothing after the last commit is acked: they are consumed again).
func (p *pipeline) stop() {
	close(p.quit)
	if p.settling != nil {
		close(p.settling)
	}
	for _, ch := range p.lanes {
		close(ch)
	}
	p.wg.Wait()
	if p.settlerDone != nil {
		<-p.settlerDone
	}
}

// settleAhead is how many windows may wait for the settler: the loop
// stops reading when they and the runs in flight reach maxInFlight.
const settleAhead = 4

// settler settles the windows handed to it, in order: effects, then
// completions, then the stream's position after the window's last
// message. After a failure it settles nothing more (the quit of the
// pipeline follows): what it was given is consumed again.
func (p *pipeline) settler() {
	defer close(p.settlerDone)
	var failed bool
	for ds := range p.settling {
		select {
		case <-p.quit: // stopping: the rest is consumed again
			failed = true
		default:
		}
		if failed {
			continue
		}
		if err := p.settleWindow(ds); err != nil {
			failed = true
			p.failed <- err
			continue
		}
		select {
		case p.settled <- ds:
		case <-p.quit:
		}
	}
}

// settleWindow settles one window and commits the position after it.
func (p *pipeline) settleWindow(ds []*delivery) error {
	if err := p.r.settleWindow(p.s.Context(), ds); err != nil {
		return err
	}
	last := ds[len(ds)-1].msg
	if err := p.s.Commit(p.r.e.hardCtx, last); err != nil {
		return fmt.Errorf("commit after %s: %w", last.UUID, err)
	}
	return nil
}

func (p *pipeline) run() error {
	msgs := p.s.Messages()
	ended := p.s.Context().Done()
	reading := true
	for {
		if err := p.settle(); err != nil {
			return err
		}
		if !reading && len(p.queue) == 0 && p.inSettle == 0 {
			return nil
		}
		in := msgs
		if !reading || len(p.queue)+p.inSettle >= maxInFlight {
			in = nil // wait for lanes or the settler instead
		}
		select {
		case m, ok := <-in:
			if !ok {
				reading = false
				continue
			}
			batch := []*message.Message{m}
		more:
			for len(batch) < windowMax && len(p.queue)+len(batch) < maxInFlight {
				select {
				case m, ok := <-msgs:
					if !ok {
						reading = false
						break more
					}
					batch = append(batch, m)
				default:
					break more
				}
			}
			if err := p.admit(batch); err != nil {
				return err
			}
		case f := <-p.done:
			f.finished = true
		case ds := <-p.settled:
			p.inSettle -= len(ds)
			p.forget(ds)
		case err := <-p.failed:
			return err
		case <-ended:
			reading, ended = false, nil // stopping, or revoked: the rest is consumed again
		}
	}
}

// admit decodes a batch, looks it up in the ledger and hands what must
// run to the lanes.
func (p *pipeline) admit(msgs []*message.Message) error {
	r := p.r
	// While runs cannot be recorded (the state database is locked or
	// full), wait: nothing is taken that could not be completed.
	if _, err := retry(p.s.Context(), whileUnwritable, r.e.Err, nil); err != nil {
		return err
	}
	ds := make([]*delivery, len(msgs))
	// Decoding and the ledger lookup have no order to keep: spread them
	// over the lanes (each part looked up on its own connection).
	lanes := min(len(p.lanes), len(msgs)/64+1)
	if lanes <= 1 {
		for i, m := range msgs {
			ds[i] = r.begin(m)
		}
		if err := r.lookUpCompleted(ds); err != nil {
			return err
		}
	} else {
		var wg sync.WaitGroup
		per := (len(msgs) + lanes - 1) / lanes
		errs := make([]error, lanes)
		for part, from := 0, 0; from < len(msgs); part, from = part+1, from+per {
			to := min(from+per, len(msgs))
			wg.Go(func() {
				for i := from; i < to; i++ {
					ds[i] = r.begin(msgs[i])
				}
				errs[part] = r.lookUpCompleted(ds[from:to])
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	r.recordCompleted(ds)
	r.firstOfEach(ds)
	if p.taken == nil {
		p.taken = map[string]string{}
	}
	for _, d := range ds {
		f := &flight{d: d}
		p.queue = append(p.queue, f)
		if run, ok := p.taken[d.run.Input]; ok && !d.skip && !d.done && d.fail == nil {
			d.done = true
			d.run.Status, d.run.Error = state.StatusDuplicate, "delivered again while run "+run+" ran it"
			r.record(d)
		}
		if d.skip || d.done || d.fail != nil {
			f.finished = true // nothing to run
			continue
		}
		p.taken[d.run.Input] = d.run.ID
		p.lanes[p.lane(d)] <- f
	}
	return nil
}

// lane picks a delivery's lane: by partition key, or in turn.
func (p *pipeline) lane(d *delivery) int {
	if len(p.lanes) == 1 {
		return 0
	}
	if k := d.msg.Metadata.Get(brokers.MetaPartitionKey); k != "" {
		return int(maphash.String(laneSeed, k) % uint64(len(p.lanes)))
	}
	p.run1 = (p.run1 + 1) % len(p.lanes)
	return p.run1
}

// settle hands the finished prefix of the queue to the settler as
// windows (of at most windowMax), each once it is long enough or nothing
// else is in flight, while the settler has room; without a settler it
// settles them itself.
func (p *pipeline) settle() error {
	for p.settling == nil || len(p.settling) < cap(p.settling) {
		n := 0
		for n < len(p.queue) && n < windowMax && p.queue[n].finished {
			n++
		}
		if n == 0 || n < len(p.queue) && n < windowMax/2 {
			return nil
		}
		ds := make([]*delivery, n)
		for i, f := range p.queue[:n] {
			ds[i] = f.d
		}
		p.queue = append(p.queue[:0], p.queue[n:]...)
		if p.settling == nil {
			if err := p.settleWindow(ds); err != nil {
				return err
			}
			p.forget(ds)
			continue
		}
		p.settling <- ds
		p.inSettle += n
	}
	return nil
}

// forget drops a settled window's inputs from taken.
func (p *pipeline) forget(ds []*delivery) {
	for _, d := range ds {
		if p.taken[d.run.Input] == d.run.ID {
			delete(p.taken, d.run.Input)
		}
	}
}

var laneSeed = maphash.MakeSeed()

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
		r.recordOrNot(d)
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
