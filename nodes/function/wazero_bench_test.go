package function_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/function"
)

// plainReactor is the reference: the same Go reactor module called
// straight through wazero, no node, no process boundary.
type plainReactor struct {
	alloc, call api.Function
	mem         api.Memory
}

func newPlainReactor(b *testing.B, module string, interrupt bool) *plainReactor {
	ctx := context.Background()
	code, err := os.ReadFile(module)
	if err != nil {
		b.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(interrupt))
	b.Cleanup(func() { _ = rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	cm, err := rt.CompileModule(ctx, code)
	if err != nil {
		b.Fatal(err)
	}
	m, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithStartFunctions("_initialize").WithSysNanotime().WithSysWalltime())
	if err != nil {
		b.Fatal(err)
	}
	return &plainReactor{m.ExportedFunction("sluice_alloc"), m.ExportedFunction("sluice_call"), m.Memory()}
}

func (p *plainReactor) time(b *testing.B, req []byte) time.Duration {
	ctx := context.Background()
	start := time.Now()
	r, err := p.alloc.Call(ctx, uint64(len(req)))
	if err != nil {
		b.Fatal(err)
	}
	p.mem.Write(uint32(r[0]), req)
	if r, err = p.call.Call(ctx, r[0], uint64(len(req))); err != nil {
		b.Fatal(err)
	}
	if _, ok := p.mem.Read(uint32(r[0]>>32), uint32(r[0])); !ok {
		b.Fatal("response outside memory")
	}
	return time.Since(start)
}

// vsBlock is how many calls of one kind BenchmarkWasmVsWazero makes in a
// row: alternating call by call, each copy of the compiled module (the
// reference's here, the host's in its process) evicts the other's code
// from the CPU caches, which measured the reference at ~100–170 µs p50
// against ~40 µs run alone.
const vsBlock = 20

// BenchmarkWasmVsWazero alternates, in blocks of vsBlock calls, a warm
// call through the node (each isolation) with the same module called
// straight through wazero without the per-loop checks (the fastest a Go
// guest can answer here), and reports both p50s and their ratio: the
// ratio holds while the machine's load changes.
func BenchmarkWasmVsWazero(b *testing.B) {
	dir := buildGo(b)
	module := filepath.Join(dir, "reactor.wasm")
	req, err := json.Marshal(function.Request{
		ID: "1", Flow: "invoices", Run: "run-1", Attempt: 2, Event: nodes.Event{ID: "msg-1"},
		Payload: map[string]any{"do": "ok", "text": "hello function"}, Meta: map[string]string{},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, rt := range [][2]string{
		{"process", `{runtime: wasm, module: ` + module + `, min_warm: 1, max_workers: 1}`},
		{"in_process", `{runtime: wasm, isolation: in_process, module: ` + module + `, min_warm: 1, max_workers: 1}`},
	} {
		b.Run(rt[0], func(b *testing.B) {
			n := started(b, rt[1], nodes.Deps{StateDir: cacheDir})
			ref := newPlainReactor(b, module, false)
			payload := func() map[string]any { return map[string]any{"do": "ok", "text": "hello function"} }
			for range 100 { // both warm
				timeCall(b, n, payload())
				ref.time(b, req)
			}
			var fn, plain []time.Duration
			for i := 0; b.Loop(); i++ {
				if i/vsBlock%2 == 0 {
					fn = append(fn, timeCall(b, n, payload()))
				} else {
					plain = append(plain, ref.time(b, req))
				}
			}
			b.ReportMetric(float64(p50(fn).Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99(fn).Microseconds()), "p99-µs")
			b.ReportMetric(float64(p50(plain).Microseconds()), "wazero-p50-µs")
			b.ReportMetric(float64(p50(fn))/float64(p50(plain)), "ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}
