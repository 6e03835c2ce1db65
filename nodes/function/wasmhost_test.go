package function_test

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// callsServed calls the function once and returns how many calls the
// instance that answered has served, itself included.
func callsServed(t *testing.T, n nodes.Node) (float64, bool) {
	t.Helper()
	env, err := callDo(t, n, "ok", 20*time.Second)
	require.NoError(t, err)
	calls := deliveryOf(env).TakeCalls()
	require.Len(t, calls, 1)
	return env.Payload.(map[string]any)["calls"].(float64), calls[0].ColdStart
}

// max_requests recycles a wasm instance as it does an exec worker, in a
// wasm host and inside Sluice; inside Sluice the call after a recycle
// starts the new instance (cold).
func TestWasmMaxRequests(t *testing.T) {
	mod := filepath.Join(buildGo(t), "reactor.wasm")
	for name, with := range map[string]string{
		"process":    `{runtime: wasm, module: ` + mod + `, max_workers: 1, max_requests: 2}`,
		"in_process": `{runtime: wasm, isolation: in_process, module: ` + mod + `, max_workers: 1, max_requests: 2}`,
	} {
		t.Run(name, func(t *testing.T) {
			n := started(t, with, nodes.Deps{StateDir: cacheDir})
			var served []float64
			var cold []bool
			for range 5 {
				s, c := callsServed(t, n)
				served, cold = append(served, s), append(cold, c)
			}
			assert.Equal(t, []float64{1, 2, 1, 2, 1}, served)
			if name == "in_process" { // a host may be replaced ahead, in the background
				assert.Equal(t, []bool{false, true, false, true}, cold[1:])
			}
		})
	}
}

// In a wasm host, a module in an endless loop is stopped at the deadline
// (the host is killed) and the next call gets a new host; cpu_time stops it
// before a long deadline. Sluice's own process stays responsive: its
// garbage collector completes while the module spins elsewhere.
func TestWasmHostStopsRunawayModules(t *testing.T) {
	mod := filepath.Join(buildGo(t), "reactor.wasm")
	n := started(t, `{runtime: wasm, module: `+mod+`, max_workers: 1}`, nodes.Deps{StateDir: cacheDir})
	start := time.Now()
	_, err := callDo(t, n, "spin", 300*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	runtime.GC()
	s, _ := callsServed(t, n)
	assert.Equal(t, 1.0, s, "a new host")

	n = started(t, `{runtime: wasm, module: `+mod+`, max_workers: 1, cpu_time: 1s}`, nodes.Deps{StateDir: cacheDir})
	env, err := callDo(t, n, "spin", 60*time.Second)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "RLIMIT_CPU stops it first")
	assert.ErrorContains(t, err, "crashed")
	assert.Contains(t, deliveryOf(env).TakeLog(), "cpu_time spent")
	s, _ = callsServed(t, n)
	assert.Equal(t, 1.0, s, "a new host")
}

// A module that cannot load fails Start, permanently, saying why.
func TestWasmHostCannotStart(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	require.NoError(t, os.WriteFile(bad, []byte("not wasm"), 0o644))
	for name, mod := range map[string]string{"not wasm": bad, "missing": filepath.Join(t.TempDir(), "none.wasm")} {
		t.Run(name, func(t *testing.T) {
			n, err := nodestest.Build("function", `{runtime: wasm, module: `+mod+`}`, nodes.Deps{})
			require.NoError(t, err)
			err = n.(nodes.Starter).Start(t.Context())
			require.NoError(t, n.(nodes.Closer).Close())
			require.Error(t, err)
			assert.True(t, nodes.IsPermanent(err), "%v", err)
			assert.ErrorContains(t, err, mod)
			assert.ErrorContains(t, err, "did not start")
		})
	}
}

// wrongCall is a reactor whose sluice_call returns an i32 where Sluice
// reads an i64:
//
//	(module (memory (export "memory") 1) (func (export "_initialize"))
//	  (func (export "sluice_alloc") (param i32) (result i32) i32.const 0)
//	  (func (export "sluice_call") (param i32 i32) (result i32) i32.const 0))
const wrongCall = "0061736d01000000010f0360000060017f017f60027f7f017f0304030001020503010001073504066d656d6f727902000b5f696e697469616c697a6500000c736c756963655f616c6c6f6300010b736c756963655f63616c6c00020a0e0302000b040041000b040041000b"

// A reactor's exports are checked at Start, in a host and in process: a
// wrong signature is a permanent error naming the export and both
// signatures.
func TestWasmReactorSignatureChecked(t *testing.T) {
	code, err := hex.DecodeString(wrongCall)
	require.NoError(t, err)
	mod := filepath.Join(t.TempDir(), "wrong.wasm")
	require.NoError(t, os.WriteFile(mod, code, 0o644))
	for _, isolation := range []string{"process", "in_process"} {
		t.Run(isolation, func(t *testing.T) {
			n, err := nodestest.Build("function", `{runtime: wasm, isolation: `+isolation+`, module: `+mod+`}`, nodes.Deps{})
			require.NoError(t, err)
			err = n.(nodes.Starter).Start(t.Context())
			require.NoError(t, n.(nodes.Closer).Close())
			require.Error(t, err)
			assert.True(t, nodes.IsPermanent(err), "%v", err)
			assert.ErrorContains(t, err, "export sluice_call is (i32, i32) -> (i32), want (i32, i32) -> (i64)")
		})
	}
}

// A reactor keeps its request and response buffers between calls: a
// short request after a long one gets its own answer, nothing of the
// long one, in a host and in process.
func TestWasmReactorReusesBuffers(t *testing.T) {
	mod := filepath.Join(buildGo(t), "reactor.wasm")
	for _, isolation := range []string{"process", "in_process"} {
		t.Run(isolation, func(t *testing.T) {
			n := started(t, `{runtime: wasm, isolation: `+isolation+`, module: `+mod+`, max_workers: 1}`, nodes.Deps{StateDir: cacheDir})
			for i, text := range []string{strings.Repeat("long text ", 20000), "short", "", strings.Repeat("é", 3000), "x"} {
				env := envelope(map[string]any{"do": "ok", "text": text})
				require.NoError(t, n.Process(t.Context(), env))
				p := env.Payload.(map[string]any)
				assert.Equal(t, strings.ToUpper(text), p["upper"], "call %d", i)
				assert.Equal(t, float64(i+1), p["calls"], "one instance serves them all")
				assert.Equal(t, "go", env.Meta["handled_by"])
			}
		})
	}
}
