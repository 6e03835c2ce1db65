// Command benthos-peer is Benthos core (v4, the MIT-licensed engine behind
// Redpanda Connect) with only its pure and io components: the peer that
// `make bench-peer` measures Sluice against. It lives in its own Go module
// so Sluice's go.mod never depends on Benthos.
//
//	benthos-peer bench CONFIG.yaml   # run the stream once, print a JSON line
//	benthos-peer ARGS...             # anything else: the Benthos CLI (run, lint, ...)
//
// bench builds the stream from CONFIG first (not timed), then times
// Stream.Run: from the start of the stream until it stops by itself, which a
// generate input with a count does once every message it made has been
// processed and written. Messages are counted by a metrics exporter that
// keeps the output_sent counter, so the line reports what really went
// through, not what the config asked for.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		if err := bench(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "benthos-peer bench:", err)
			os.Exit(1)
		}
		return
	}
	service.RunCLI(context.Background())
}

const usage = `usage: benthos-peer bench CONFIG.yaml

Builds the stream CONFIG describes (its metrics section is replaced by a
counter of output_sent), runs it until it stops by itself, and prints one
JSON line: {"messages": N, "seconds": S, "msgs_per_s": R, "cpu_seconds": C},
C being the CPU time the process used meanwhile (user + system).`

// sent counts output_sent, every message an output wrote.
var sent atomic.Int64

func bench(args []string) error {
	if len(args) != 1 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(os.Stderr, usage)
		if len(args) == 1 {
			return nil
		}
		return fmt.Errorf("want one config file, got %d arguments", len(args))
	}
	conf, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	env := service.NewEnvironment()
	if err := env.RegisterMetricsExporter("sent_counter", service.NewConfigSpec(),
		func(*service.ParsedConfig, *service.Logger) (service.MetricsExporter, error) { return exporter{}, nil }); err != nil {
		return err
	}
	b := env.NewStreamBuilder()
	if err := b.SetYAML(string(conf)); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	if err := b.SetMetricsYAML("sent_counter: {}"); err != nil {
		return err
	}
	stream, err := b.Build()
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	start, cpu0 := time.Now(), cpuTime()
	if err := stream.Run(context.Background()); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	secs, cpu := time.Since(start).Seconds(), cpuTime()-cpu0
	n := sent.Load()
	if n == 0 {
		return fmt.Errorf("%s: no message reached the output", args[0])
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"messages": n, "seconds": secs, "msgs_per_s": float64(n) / secs,
		"cpu_seconds": cpu.Seconds()})
}

// cpuTime is the CPU time this process used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// exporter keeps output_sent and discards every other metric.
type exporter struct{}

type counter struct{}
type nop struct{}

func (counter) Incr(n int64)                 { sent.Add(n) }
func (counter) IncrFloat64(float64)          {}
func (nop) Incr(int64)                       {}
func (nop) IncrFloat64(float64)              {}
func (nop) Timing(int64)                     {}
func (nop) Set(int64)                        {}
func (nop) SetFloat64(float64)               {}
func (exporter) Close(context.Context) error { return nil }

func (exporter) NewCounterCtor(name string, _ ...string) service.MetricsExporterCounterCtor {
	if name == "output_sent" {
		return func(...string) service.MetricsExporterCounter { return counter{} }
	}
	return func(...string) service.MetricsExporterCounter { return nop{} }
}
func (exporter) NewTimerCtor(string, ...string) service.MetricsExporterTimerCtor {
	return func(...string) service.MetricsExporterTimer { return nop{} }
}
func (exporter) NewGaugeCtor(string, ...string) service.MetricsExporterGaugeCtor {
	return func(...string) service.MetricsExporterGauge { return nop{} }
}
