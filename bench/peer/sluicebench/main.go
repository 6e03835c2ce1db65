// Command sluicebench is the Sluice side of `make bench-peer`: it measures
// how fast the engine consumes a topic through a flow shaped like the
// Benthos peer's pipeline (../benthos/batched.yaml): a transform computing
// total, a switch whose case routes qty < 0 to a topic, a transform, and no
// publish (the output is dropped).
//
// It first queues -n JSON messages {"id", "qty", "price", "kind"} on the
// broker (not timed), then starts the engine and times from Engine.Run
// until the flow's finished runs (sluice_runs_total) reach -n. It prints
// one JSON line: {"queue", "record", "floor", "messages", "seconds",
// "msgs_per_s", "cpu_seconds", "gc_target"} (the CPU time used meanwhile,
// the poll of the counter included; the heap target applied, 0 for Go's
// default pace).
//
// Queues: mem (mem://, GoChannel keeping the queued messages for the
// engine's subscription; no state database, no ledger) and sqlite (the
// durable embedded queue with the default settings of `sluice run`, and the
// completion ledger on in a state database beside it). It uses only the
// engine's public API, so it keeps working while the engine changes.
//
// With -record failures the flow keeps no record of the runs that succeed
// (`record: failures`): on sqlite the completion ledger is then one small
// row per input instead of the run records.
//
// The garbage collector is paced as `sluice run` paces it (-gc-target, as
// its --gc-target; 0 for Go's default pace, as Benthos runs).
//
// With -floor no engine runs: the queued messages are read through the
// broker's Streamer (brokers.Stream, committing every 100 messages), which
// is what the queue itself costs, the ceiling any engine on it can reach.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/internal/gctune"
	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/all"
	"github.com/sluicehq/sluice/state"
)

// peerFlow has the shape of the Benthos peer's pipeline, with as many
// lanes (concurrency) as the peer has threads.
const peerFlow = `
name: peer
on: {topic: in}
concurrency: 2
record: %s
steps:
  - node: transform
    with:
      set: {total: payload.qty * payload.price}
  - node: switch
    with:
      cases:
        - when: payload.qty < 0
          topic: rejected
  - node: transform
    with:
      set: {checked: true}
`

// Queue kinds of -queue.
const (
	queueMem    = "mem"
	queueSQLite = "sqlite"
)

// queueChunk is how many messages one Publish call queues.
const queueChunk = 1000

type options struct {
	queue   string
	record  string // the flow's record setting: all or failures
	floor   bool
	n       int
	dir     string
	poll    time.Duration
	timeout time.Duration
	profile string // CPU profile of the timed part, when set
	memProf string // allocation profile at the end, when set
	trace   string // execution trace of the timed part, when set
	gc      uint64 // the GC heap target (gctune), as `sluice run --gc-target`
}

func main() {
	var o options
	flag.StringVar(&o.queue, "queue", queueMem, "queue to consume: mem (no ledger) or sqlite (durable, completion ledger on)")
	flag.StringVar(&o.record, "record", flows.RecordAll, "the flow's record setting: all (a run record per message) or failures (successes leave only their completion)")
	flag.BoolVar(&o.floor, "floor", false, "run no engine: read the queued messages through the broker's stream (the queue's ceiling)")
	flag.IntVar(&o.n, "n", 200000, "messages to queue and consume")
	flag.StringVar(&o.dir, "dir", "", "directory for the queue and state files (default: a temporary one, removed at exit)")
	flag.DurationVar(&o.poll, "poll", 2*time.Millisecond, "how often the finished-run count is read (bounds the timing error)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up when the messages are not consumed within this")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the timed part to this file (go tool pprof)")
	flag.Uint64Var(&o.gc, "gc-target", gctune.DefaultTarget, "let the heap grow to this many bytes before the garbage collector runs, as sluice run --gc-target does by default (0: Go's default pace)")
	flag.StringVar(&o.trace, "trace", "", "write an execution trace of the timed part to this file (go tool trace)")
	flag.StringVar(&o.memProf, "memprofile", "", "write an allocation profile to this file at the end (go tool pprof -sample_index=alloc_objects)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: sluicebench [flags]\n\n"+
			"Queues -n messages (not timed), runs a transform → switch → transform flow over\n"+
			"them and prints messages/s as a JSON line, from engine start to the last run.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(context.Background(), o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sluicebench:", err)
		os.Exit(1)
	}
}

// run queues o.n messages, consumes them as o says, and writes the JSON
// line to out.
func run(ctx context.Context, o options, out io.Writer) error {
	if o.n < 1 {
		return fmt.Errorf("-n must be at least 1, not %d", o.n)
	}
	if o.queue != queueMem && o.queue != queueSQLite {
		return fmt.Errorf("-queue must be %s or %s, not %q", queueMem, queueSQLite, o.queue)
	}
	if o.record == "" {
		o.record = flows.RecordAll
	}
	if o.record != flows.RecordAll && o.record != flows.RecordFailures {
		return fmt.Errorf("-record must be %s or %s, not %q", flows.RecordAll, flows.RecordFailures, o.record)
	}
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "sluicebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dir = dir
	}
	o.gc = gctune.Start(o.gc) // what is applied: 0 when GOGC is set
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	url := "mem://?persistent=true"
	if o.queue == queueSQLite {
		url = "sqlite://" + filepath.Join(o.dir, "queue.db")
	}
	br, err := brokers.Open(ctx, url, nil)
	if err != nil {
		return err
	}
	defer br.Close()
	if err := queue(br.Publisher(), o.n); err != nil {
		return fmt.Errorf("queue %d messages: %w", o.n, err)
	}

	if o.profile != "" {
		stop, err := record(o.profile, "cpuprofile", pprof.StartCPUProfile, pprof.StopCPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if o.trace != "" {
		stop, err := record(o.trace, "trace", trace.Start, trace.Stop)
		if err != nil {
			return err
		}
		defer stop()
	}
	if o.floor {
		cpu0 := cpuTime()
		elapsed, err := floor(ctx, br, o.n)
		if err != nil {
			return err
		}
		return report(out, o, elapsed, cpuTime()-cpu0)
	}

	file := filepath.Join(o.dir, "peer.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, peerFlow, o.record), 0o644); err != nil {
		return err
	}
	fl, err := flows.Loader{Deps: nodes.Deps{Logger: logger}}.Load(file)
	if err != nil {
		return err
	}
	reg := &runsOnly{Registry: prometheus.NewRegistry(), rest: prometheus.NewRegistry()}
	opts := flows.Options{Broker: br, Logger: logger, Metrics: flows.NewMetrics(reg), NoLedger: true}
	if o.queue == queueSQLite {
		st, err := state.Open(filepath.Join(o.dir, "state.db"))
		if err != nil {
			return err
		}
		defer st.Close()
		opts.State, opts.NoLedger = st, false
	}
	engine, err := flows.NewEngine(opts, fl)
	if err != nil {
		return err
	}

	start, cpu0 := time.Now(), cpuTime()
	var runErr error
	stopped := make(chan struct{})
	go func() { defer close(stopped); runErr = engine.Run(ctx) }()
	runs, err := waitRuns(ctx, reg, o, stopped)
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	cancel()
	<-stopped
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		err = errors.Join(err, fmt.Errorf("engine: %w", runErr))
	}
	if err != nil {
		return err
	}
	if runs["succeeded"] != float64(o.n) {
		return fmt.Errorf("runs by status %v, want %d succeeded", runs, o.n)
	}
	if o.memProf != "" {
		if err := writeHeapProfile(o.memProf); err != nil {
			return err
		}
	}
	return report(out, o, elapsed, cpu)
}

// report writes the JSON line: wall time and rate, and the CPU time the
// process used meanwhile (user + system, all threads), which a machine
// shared with other work inflates less than the wall time.
func report(out io.Writer, o options, elapsed, cpu time.Duration) error {
	return json.NewEncoder(out).Encode(map[string]any{
		"queue": o.queue, "record": o.record, "floor": o.floor, "messages": o.n, "seconds": elapsed.Seconds(), "msgs_per_s": float64(o.n) / elapsed.Seconds(),
		"cpu_seconds": cpu.Seconds(), "gc_target": o.gc,
	})
}

// cpuTime is the CPU time this process used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// record starts writing a CPU profile or an execution trace (start and
// end, such as pprof.StartCPUProfile and pprof.StopCPUProfile) into path,
// for the flag named flag; stop ends it and closes the file.
func record(path, flag string, start func(io.Writer) error, end func()) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-%s: %w", flag, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-%s: %w", flag, err)
	}
	return func() { end(); f.Close() }, nil
}

// writeHeapProfile writes the allocations made so far (queueing included)
// to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("-memprofile: %w", err)
	}
	return f.Close()
}

// floorCommit is how many streamed messages one Commit covers.
const floorCommit = 100

// floor reads n messages from "in" through the broker's stream, committing
// every floorCommit messages and the last, and returns the time from the
// start of the stream to the last commit.
func floor(ctx context.Context, br brokers.Broker, n int) (time.Duration, error) {
	s, ok := br.(brokers.Streamer)
	if !ok {
		return 0, fmt.Errorf("-floor: broker %T cannot stream", br)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got atomic.Int64
	var elapsed atomic.Int64
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		errc <- s.Stream(ctx, "in", "peer", func(st brokers.Stream) error {
			var k int
			for m := range st.Messages() {
				k++
				total := got.Add(1)
				if k%floorCommit == 0 || total == int64(n) {
					if err := st.Commit(ctx, m); err != nil {
						return err
					}
				}
				if total == int64(n) {
					elapsed.Store(int64(time.Since(start)))
					cancel()
				}
			}
			return nil
		})
	}()
	deadline := time.After(10 * time.Minute)
	select {
	case err := <-errc:
		if d := elapsed.Load(); d > 0 {
			return time.Duration(d), nil
		}
		return 0, fmt.Errorf("-floor: stream ended after %d of %d messages: %v", got.Load(), n, err)
	case <-deadline:
		return 0, fmt.Errorf("-floor: only %d of %d messages streamed within 10m", got.Load(), n)
	}
}

// queue publishes n messages to "in", queueChunk per Publish call.
func queue(pub message.Publisher, n int) error {
	kinds := []string{"book", "pen"}
	batch := make([]*message.Message, 0, queueChunk)
	for i := 0; i < n; i++ {
		payload := fmt.Sprintf(`{"id":%d,"qty":%d,"price":2.5,"kind":%q}`, i, i%7, kinds[i%2])
		batch = append(batch, message.NewMessage(fmt.Sprintf("peer-%d", i), []byte(payload)))
		if len(batch) == queueChunk || i == n-1 {
			if err := pub.Publish("in", batch...); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// waitRuns reads sluice_runs_total every o.poll until the finished runs
// reach o.n, and returns them by status. It fails when the engine stops
// (closed stopped; the caller reports Run's error),
// when o.timeout passes first, or when any run ends other than succeeded.
func waitRuns(ctx context.Context, reg prometheus.Gatherer, o options, stopped <-chan struct{}) (map[string]float64, error) {
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	deadline := time.After(o.timeout)
	for {
		runs, err := runsByStatus(reg)
		if err != nil {
			return nil, err
		}
		var total float64
		for _, v := range runs {
			total += v
		}
		if total >= float64(o.n) {
			return runs, nil
		}
		select {
		case <-tick.C:
		case <-stopped:
			return nil, fmt.Errorf("engine stopped after %.0f of %d runs", total, o.n)
		case <-deadline:
			return nil, fmt.Errorf("only %.0f of %d runs finished within %s (by status: %v)", total, o.n, o.timeout, runs)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// runsOnly registers sluice_runs_total in its Registry and every other
// metric in rest, so the poll gathers that one counter: gathering every
// histogram each poll allocated as much as a tenth of what the engine
// did, which `sluice run` never does (Prometheus scrapes it every few
// seconds).
type runsOnly struct {
	*prometheus.Registry
	rest *prometheus.Registry
}

func (r *runsOnly) Register(c prometheus.Collector) error {
	descs := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(descs); close(descs) }()
	runs := false
	for d := range descs {
		runs = runs || strings.Contains(d.String(), `"sluice_runs_total"`)
	}
	if runs {
		return r.Registry.Register(c)
	}
	return r.rest.Register(c)
}

func (r *runsOnly) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// runsByStatus sums sluice_runs_total by its status label.
func runsByStatus(reg prometheus.Gatherer) (map[string]float64, error) {
	families, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	runs := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "sluice_runs_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" && m.GetCounter().GetValue() > 0 {
					runs[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return runs, nil
}
