package function_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/core"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// benchRuntimes are the warm-call configurations compared with a
// built-in transform doing similar work (upper-casing a field).
func benchRuntimes(b *testing.B) [][2]string {
	dir := buildGo(b)
	return [][2]string{
		{"exec-go", `{runtime: exec, command: [` + filepath.Join(dir, "goworker") + `], min_warm: 1, max_workers: 1}`},
		{"exec-python", `{runtime: exec, command: [python3, testdata/handler.py], min_warm: 1, max_workers: 1}`},
		{"exec-node", `{runtime: exec, command: [node, testdata/handler.js], min_warm: 1, max_workers: 1}`},
		{"wasm-reactor", `{runtime: wasm, module: ` + filepath.Join(dir, "reactor.wasm") + `, min_warm: 1, max_workers: 1}`},
		{"wasm-reactor-in-process", `{runtime: wasm, isolation: in_process, module: ` + filepath.Join(dir, "reactor.wasm") + `, min_warm: 1, max_workers: 1}`},
		{"wasm-reactor-in-process-no-interrupt", `{runtime: wasm, isolation: in_process, module: ` + filepath.Join(dir, "reactor.wasm") + `, min_warm: 1, max_workers: 1, interrupt: false}`},
		{"wasm-command", `{runtime: wasm, module: ` + filepath.Join(dir, "command.wasm") + `, max_workers: 1}`},
	}
}

func p50(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func p99(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)*99/100]
}

func mean(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

func timeCall(b *testing.B, n nodes.Node, payload map[string]any) time.Duration {
	env := envelope(payload)
	start := time.Now()
	if err := n.Process(context.Background(), env); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkWarmCall compares one warm function call with a built-in
// transform step, alternating them call by call so both see the same
// machine load, and reports each p50 and the p50 latency the function
// adds.
func BenchmarkWarmCall(b *testing.B) {
	transform, err := nodestest.Build("transform", `{set: {upper: 'upper(payload.text)'}}`, nodes.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	for _, rt := range benchRuntimes(b) {
		b.Run(rt[0], func(b *testing.B) {
			n := started(b, rt[1], nodes.Deps{StateDir: cacheDir})
			payload := func() map[string]any { return map[string]any{"do": "ok", "text": "hello function"} }
			timeCall(b, n, payload()) // the first call after start, warm (min_warm) or not
			var fn, ref []time.Duration
			for b.Loop() {
				fn = append(fn, timeCall(b, n, payload()))
				ref = append(ref, timeCall(b, transform, payload()))
			}
			b.ReportMetric(float64(p50(fn).Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99(fn).Microseconds()), "p99-µs")
			b.ReportMetric(float64(mean(fn).Microseconds()), "mean-µs")
			b.ReportMetric(float64(p50(ref).Nanoseconds())/1000, "transform-p50-µs")
			b.ReportMetric(float64((p50(fn) - p50(ref)).Microseconds()), "added-p50-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkThroughput calls a Go worker pool of two from many goroutines
// and reports calls per second (two workers on a two-core machine).
func BenchmarkThroughput(b *testing.B) {
	dir := buildGo(b)
	for _, rt := range [][2]string{
		{"exec-go", `{runtime: exec, command: [` + filepath.Join(dir, "goworker") + `], min_warm: 2, max_workers: 2}`},
		{"wasm-reactor", `{runtime: wasm, module: ` + filepath.Join(dir, "reactor.wasm") + `, min_warm: 2, max_workers: 2}`},
		{"wasm-reactor-in-process", `{runtime: wasm, isolation: in_process, module: ` + filepath.Join(dir, "reactor.wasm") + `, min_warm: 2, max_workers: 2}`},
		{"wasm-reactor-in-process-no-interrupt", `{runtime: wasm, isolation: in_process, module: ` + filepath.Join(dir, "reactor.wasm") + `, min_warm: 2, max_workers: 2, interrupt: false}`},
	} {
		b.Run(rt[0], func(b *testing.B) {
			n := started(b, rt[1], nodes.Deps{StateDir: cacheDir})
			b.SetParallelism(4)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					env := envelope(map[string]any{"do": "ok", "text": "hello"})
					if err := n.Process(context.Background(), env); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
		})
	}
}

// BenchmarkColdStart reports the first call after Start: without min_warm
// it starts a worker (instance) first; with it, it does not. Wasm modules
// come from the compilation cache (warmed before timing).
func BenchmarkColdStart(b *testing.B) {
	dir := buildGo(b)
	started(b, `{runtime: wasm, module: `+filepath.Join(dir, "reactor.wasm")+`}`, nodes.Deps{StateDir: cacheDir})                        // fills the cache
	started(b, `{runtime: wasm, isolation: in_process, module: `+filepath.Join(dir, "reactor.wasm")+`}`, nodes.Deps{StateDir: cacheDir}) // and the interruptible one
	for _, rt := range [][2]string{
		{"exec-python", `{runtime: exec, command: [python3, testdata/handler.py]}`},
		{"exec-python-min_warm", `{runtime: exec, command: [python3, testdata/handler.py], min_warm: 1}`},
		{"exec-node", `{runtime: exec, command: [node, testdata/handler.js]}`},
		{"exec-go", `{runtime: exec, command: [` + filepath.Join(dir, "goworker") + `]}`},
		{"wasm-reactor", `{runtime: wasm, module: ` + filepath.Join(dir, "reactor.wasm") + `}`},
		{"wasm-reactor-in-process", `{runtime: wasm, isolation: in_process, module: ` + filepath.Join(dir, "reactor.wasm") + `}`},
	} {
		b.Run(rt[0], func(b *testing.B) {
			var first, startup []time.Duration
			for b.Loop() {
				n, err := nodestest.Build("function", rt[1], nodes.Deps{StateDir: cacheDir})
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := n.(nodes.Starter).Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				startup = append(startup, time.Since(t0))
				first = append(first, timeCall(b, n, map[string]any{"do": "ok"}))
				_ = n.(nodes.Closer).Close()
			}
			b.ReportMetric(float64(p50(startup).Microseconds())/1000, "start-ms")
			b.ReportMetric(float64(p50(first).Microseconds())/1000, "first-call-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
