package function_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/nodes"
)

// BenchmarkDeadlineOvershoot reports how long after a 100 ms deadline a
// hanging call returns, per runtime and kind of hang (a busy loop, a sleep).
func BenchmarkDeadlineOvershoot(b *testing.B) {
	dir := buildGo(b)
	for name, with := range map[string]string{
		"wasm-reactor": `{runtime: wasm, module: ` + filepath.Join(dir, "reactor.wasm") + `}`,
		"wasm-command": `{runtime: wasm, module: ` + filepath.Join(dir, "command.wasm") + `}`,
		"exec-go":      `{runtime: exec, command: [` + filepath.Join(dir, "goworker") + `]}`,
		"exec-python":  `{runtime: exec, command: [python3, testdata/handler.py]}`,
	} {
		n := started(b, with, nodes.Deps{StateDir: cacheDir})
		for _, do := range []string{"spin", "hang"} {
			b.Run(name+"/"+do, func(b *testing.B) {
				var worst time.Duration
				var total time.Duration
				for b.Loop() {
					start := time.Now()
					_, _ = callDo(b, n, do, 100*time.Millisecond)
					over := time.Since(start) - 100*time.Millisecond
					total += over
					worst = max(worst, over)
				}
				b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs-over/op")
				b.ReportMetric(float64(worst.Microseconds()), "µs-worst")
			})
		}
	}
}
