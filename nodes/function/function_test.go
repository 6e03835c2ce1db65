package function_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/function"
	"github.com/sluicehq/sluice/nodes/nodestest"
	"github.com/sluicehq/sluice/storage"
)

// started builds a function node from its `with:` YAML and starts it.
func started(t testing.TB, with string, deps nodes.Deps) nodes.Node {
	t.Helper()
	n, err := nodestest.Build("function", with, deps)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, n.(nodes.Closer).Close()) })
	require.NoError(t, n.(nodes.Starter).Start(context.Background()))
	return n
}

// deliveries keeps each test envelope's delivery, for what the engine
// would take from it (metered calls, log text).
var (
	deliveriesMu sync.Mutex
	deliveries   = map[*nodes.Envelope]*nodes.Delivery{}
)

func envelope(payload map[string]any) *nodes.Envelope {
	d := nodes.NewDelivery(nil, 0)
	env := d.Envelope()
	env.Flow, env.Run, env.Event.ID, env.Payload = "invoices", "run-1", "msg-1", payload
	d.SetStep("fn")
	d.SetAttempt(2)
	deliveriesMu.Lock()
	deliveries[env] = d
	deliveriesMu.Unlock()
	return env
}

func deliveryOf(env *nodes.Envelope) *nodes.Delivery {
	deliveriesMu.Lock()
	defer deliveriesMu.Unlock()
	return deliveries[env]
}

// callDo runs the function with payload {do: do} within timeout.
func callDo(t testing.TB, n nodes.Node, do string, timeout time.Duration) (*nodes.Envelope, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	env := envelope(map[string]any{"do": do})
	return env, n.Process(ctx, env)
}

var goWorker struct {
	once sync.Once
	dir  string
	err  error
}

// buildGo builds testdata/goworker once: the exec binary, the WASI
// command and the WASI reactor.
func buildGo(t testing.TB) string {
	t.Helper()
	goWorker.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-goworker-")
		if err != nil {
			goWorker.err = err
			return
		}
		goWorker.dir = dir
		for _, b := range []struct {
			out  string
			args []string
			env  []string
		}{
			{"goworker", nil, nil},
			{"command.wasm", nil, []string{"GOOS=wasip1", "GOARCH=wasm"}},
			{"reactor.wasm", []string{"-tags", "reactor", "-buildmode=c-shared"}, []string{"GOOS=wasip1", "GOARCH=wasm"}},
		} {
			args := append(append([]string{"build"}, b.args...), "-o", filepath.Join(dir, b.out), ".")
			cmd := exec.Command("go", args...)
			cmd.Dir, cmd.Env = "testdata/goworker", append(os.Environ(), b.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				goWorker.err = &buildError{b.out, string(out), err}
				return
			}
		}
	})
	require.NoError(t, goWorker.err)
	return goWorker.dir
}

type buildError struct {
	what, out string
	err       error
}

func (e *buildError) Error() string { return "build " + e.what + ": " + e.err.Error() + "\n" + e.out }

// cacheDir is a Sluice home shared by the tests, so wasm modules are
// compiled once (wazero's compilation cache lives under it).
var cacheDir string

func TestMain(m *testing.M) {
	cacheDir, _ = os.MkdirTemp("", "sluice-fn-home-")
	code := m.Run()
	os.RemoveAll(cacheDir)
	if goWorker.dir != "" {
		os.RemoveAll(goWorker.dir)
	}
	os.Exit(code)
}

// runtimes are the same test function in each runtime.
func runtimes(t *testing.T) map[string]string {
	dir := buildGo(t)
	return map[string]string{
		"python":       `{runtime: exec, command: [python3, testdata/handler.py], max_output: 50000, memory_mb: 200}`,
		"node":         `{runtime: exec, command: [node, testdata/handler.js], max_output: 50000, memory_mb: 200}`,
		"go":           `{runtime: exec, command: [` + filepath.Join(dir, "goworker") + `], max_output: 50000, memory_mb: 200}`,
		"wasm-command": `{runtime: wasm, module: ` + filepath.Join(dir, "command.wasm") + `, max_output: 50000, memory_mb: 64}`,
		"wasm-reactor": `{runtime: wasm, module: ` + filepath.Join(dir, "reactor.wasm") + `, max_output: 50000, memory_mb: 64}`,
		// Inside Sluice, interruptible (the other wasm runtimes run in wasm hosts).
		"wasm-command-in-process": `{runtime: wasm, isolation: in_process, module: ` + filepath.Join(dir, "command.wasm") + `, max_output: 50000, memory_mb: 64}`,
		"wasm-reactor-in-process": `{runtime: wasm, isolation: in_process, module: ` + filepath.Join(dir, "reactor.wasm") + `, max_output: 50000, memory_mb: 64}`,
	}
}

// TestContract runs the same behaviours through every runtime: answers,
// a function's errors, bad output, crashes, hangs and memory hogs.
func TestContract(t *testing.T) {
	for name, with := range runtimes(t) {
		t.Run(name, func(t *testing.T) {
			if name == "node" {
				if _, err := exec.LookPath("node"); err != nil {
					if os.Getenv("CI") == "true" {
						t.Fatal("node is not installed (scripts/test.sh installs it)")
					}
					t.Skip("node is not installed")
				}
			}
			n := started(t, with, nodes.Deps{StateDir: cacheDir})
			// OK: the payload and meta come back; the call is metered.
			env := envelope(map[string]any{"do": "ok", "text": "abc"})
			require.NoError(t, n.Process(t.Context(), env))
			assert.NotNil(t, env.Payload.(map[string]any)["pid"], "%v", env.Payload)
			assert.Equal(t, env.Payload, env.Steps["fn"])
			assert.NotEmpty(t, env.Meta["handled_by"])
			calls := deliveryOf(env).TakeCalls()
			require.Len(t, calls, 1)
			assert.Equal(t, "function", calls[0].Kind)
			assert.Positive(t, calls[0].Duration)
			assert.Positive(t, calls[0].BytesIn)
			assert.Empty(t, calls[0].Error)

			// A permanent error from the function.
			env, err := callDo(t, n, "permanent", 10*time.Second)
			require.Error(t, err)
			assert.True(t, nodes.IsPermanent(err), "%v", err)
			assert.Contains(t, err.Error(), "bad order")
			assert.NotEmpty(t, deliveryOf(env).TakeCalls()[0].Error)

			if !strings.HasPrefix(name, "wasm") {
				// Not JSON on stdout: permanent, and says where logs go.
				_, err = callDo(t, n, "notjson", 10*time.Second)
				assert.True(t, nodes.IsPermanent(err), "%v", err)
				assert.ErrorContains(t, err, "stderr, not stdout")
			}
			if name != "node" {
				_, err = callDo(t, n, "big", 10*time.Second)
				assert.True(t, nodes.IsPermanent(err), "%v", err)
				assert.ErrorContains(t, err, "max_output")
			}

			// A crash: transient, with the stderr tail for the run record.
			env, err = callDo(t, n, "crash", 10*time.Second)
			require.Error(t, err)
			assert.False(t, nodes.IsPermanent(err), "%v", err)
			assert.ErrorContains(t, err, "crashed")
			assert.Contains(t, deliveryOf(env).TakeLog(), "about to crash")

			// A hang: killed at the deadline, transient, naming the timeout.
			_, err = callDo(t, n, "hang", 300*time.Millisecond)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.False(t, nodes.IsPermanent(err))
			if name != "node" {
				_, err = callDo(t, n, "spin", 300*time.Millisecond)
				require.ErrorIs(t, err, context.DeadlineExceeded)
			}

			// A memory hog meets the cap and fails (transient: a crash or
			// the function's own error).
			_, err = callDo(t, n, "hog", 20*time.Second)
			require.Error(t, err)
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
			assert.False(t, nodes.IsPermanent(err))

			// And the function still works afterwards (workers replaced).
			env = envelope(map[string]any{"do": "ok", "text": "again"})
			require.NoError(t, n.Process(t.Context(), env))
		})
	}
}

func TestExecPoolWarmsRecyclesAndIsolates(t *testing.T) {
	t.Setenv("FN_SECRET", "from-env")
	t.Setenv("OTHER_SECRET", "hidden")
	py := `{runtime: exec, command: [python3, testdata/handler.py]`
	// Without min_warm the first call starts a worker: a cold start.
	n := started(t, py+`}`, nodes.Deps{})
	env, err := callDo(t, n, "ok", 10*time.Second)
	require.NoError(t, err)
	assert.True(t, deliveryOf(env).TakeCalls()[0].ColdStart)
	p := env.Payload.(map[string]any)
	assert.Nil(t, p["env"], "variables are not passed unless listed")
	assert.Equal(t, 2.0, p["attempt"])
	assert.Equal(t, "run-1", p["run"])
	assert.NotEmpty(t, p["deadline"])
	env, err = callDo(t, n, "ok", 10*time.Second)
	require.NoError(t, err)
	assert.False(t, deliveryOf(env).TakeCalls()[0].ColdStart, "the worker is kept warm")

	// With min_warm the first call pays none; max_requests recycles.
	n = started(t, py+`, min_warm: 1, max_requests: 2, env: [FN_SECRET]}`, nodes.Deps{})
	var pids []float64
	for i := range 4 {
		env, err := callDo(t, n, "ok", 10*time.Second)
		require.NoError(t, err)
		pids = append(pids, env.Payload.(map[string]any)["pid"].(float64))
		assert.Equal(t, "from-env", env.Payload.(map[string]any)["env"])
		if i == 0 {
			assert.False(t, deliveryOf(env).TakeCalls()[0].ColdStart, "min_warm started the worker ahead")
		}
	}
	assert.Equal(t, pids[0], pids[1])
	assert.NotEqual(t, pids[1], pids[2], "a worker is replaced after max_requests")
	assert.NotEqual(t, pids[1], pids[3])
}

func TestExecWorkerOutOfStepIsReplaced(t *testing.T) {
	n := started(t, `{runtime: exec, command: [python3, testdata/handler.py], max_workers: 1}`, nodes.Deps{})
	env, err := callDo(t, n, "twice", 10*time.Second)
	require.NoError(t, err)
	pid := env.Payload.(map[string]any)["pid"]
	// The stray line arrives after the answer: a worker holding one is
	// replaced before it serves again. (A call already reading when the
	// line arrives fails, permanently, naming the wrong id.)
	require.Eventually(t, func() bool {
		env, err := callDo(t, n, "ok", 10*time.Second)
		if err != nil {
			assert.ErrorContains(t, err, `answers id "stray"`)
			return false
		}
		return env.Payload.(map[string]any)["pid"] != pid
	}, 10*time.Second, 20*time.Millisecond)
}

func TestWasmWithoutInterrupt(t *testing.T) {
	n, err := nodestest.Build("function", `{runtime: wasm, isolation: in_process, module: `+filepath.Join(buildGo(t), "reactor.wasm")+`, interrupt: false, max_workers: 1}`, nodes.Deps{StateDir: cacheDir})
	require.NoError(t, err)
	require.NoError(t, n.(nodes.Starter).Start(t.Context()))
	env, err := callDo(t, n, "ok", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "go", env.Meta["handled_by"])
	// Past the deadline the call fails at once, as a timeout…
	_, err = callDo(t, n, "hang", 200*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "interrupt: false")
	// …but the module sleeps on in its slot: the only slot.
	_, err = callDo(t, n, "ok", 200*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "stayed busy")
	// Closing does not pull the module from under the running call.
	assert.ErrorContains(t, n.(nodes.Closer).Close(), "a call is still running")
}

func TestExecConcurrentCallsUseSeveralWorkers(t *testing.T) {
	n := started(t, `{runtime: exec, command: [python3, testdata/handler.py], max_workers: 3, min_warm: 3}`, nodes.Deps{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	pids := map[float64]bool{}
	for range 30 {
		wg.Go(func() {
			env, err := callDo(t, n, "ok", 10*time.Second)
			if assert.NoError(t, err) {
				mu.Lock()
				pids[env.Payload.(map[string]any)["pid"].(float64)] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, len(pids), 3, "never more than max_workers processes")
}

func TestExecCannotStart(t *testing.T) {
	// A missing script: the worker exits at once; its stderr says why.
	n, err := nodestest.Build("function", `{runtime: exec, command: [python3, testdata/missing.py], min_warm: 1}`, nodes.Deps{})
	require.NoError(t, err)
	err = n.(nodes.Starter).Start(t.Context())
	require.NoError(t, n.(nodes.Closer).Close())
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.Contains(t, err.Error(), "did not start")
	assert.Contains(t, err.Error(), "missing.py")
	// Without min_warm the step fails the same way, permanently.
	_, err = callDo(t, started(t, `{runtime: exec, command: [python3, -c, "import sys; sys.exit('no config')"]}`, nodes.Deps{}), "ok", 10*time.Second)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorContains(t, err, "no config")
	// A missing program fails Start.
	n, err = nodestest.Build("function", `{runtime: exec, command: [no-such-program-here]}`, nodes.Deps{})
	require.NoError(t, err)
	assert.ErrorContains(t, n.(nodes.Starter).Start(t.Context()), "no-such-program-here")
	require.NoError(t, n.(nodes.Closer).Close())
}

// TestExecCPUTime: a worker spinning past cpu_time is stopped by its
// RLIMIT_CPU, before the step's deadline: Python by SIGXCPU's default
// action, a Go worker by the Go helper (Go ignores SIGXCPU by default).
func TestExecCPUTime(t *testing.T) {
	for name, command := range map[string]string{
		"python": `[python3, testdata/handler.py]`,
		"go":     `[` + filepath.Join(buildGo(t), "goworker") + `]`,
	} {
		t.Run(name, func(t *testing.T) {
			n := started(t, `{runtime: exec, command: `+command+`, cpu_time: 1s}`, nodes.Deps{})
			_, err := callDo(t, n, "spin", 20*time.Second)
			require.Error(t, err)
			assert.NotErrorIs(t, err, context.DeadlineExceeded, "RLIMIT_CPU stops it first")
			assert.ErrorContains(t, err, "crashed")
			_, err = callDo(t, n, "ok", 10*time.Second)
			require.NoError(t, err)
		})
	}
}

func TestBodyIsHandedOverAsAFile(t *testing.T) {
	store := storage.NewStore(storage.NewMem())
	ctx := t.Context()
	require.NoError(t, store.EnsureBucket(ctx, "uploads"))
	info, err := store.PutBytes(ctx, "uploads", "inv.txt", []byte("TOTAL 12.50\n"), storage.PutOptions{})
	require.NoError(t, err)
	for name, with := range map[string]string{
		"python": `{runtime: exec, command: [python3, testdata/handler.py], body: true}`,
		"wasm":   `{runtime: wasm, module: ` + filepath.Join(buildGo(t), "reactor.wasm") + `, body: true}`,
	} {
		t.Run(name, func(t *testing.T) {
			n := started(t, with, nodes.Deps{Store: store, StateDir: cacheDir})
			env := nodes.NewDelivery(store, 1<<20).Envelope()
			env.SetObject(info)
			env.Payload = map[string]any{"do": "body"}
			require.NoError(t, n.Process(ctx, env))
			assert.Equal(t, 12.0, env.Payload.(map[string]any)["size"])
		})
	}
}

func TestConfigProblems(t *testing.T) {
	for _, tc := range []struct{ with, want string }{
		{`{runtime: exec}`, `field "command": runtime exec needs a command`},
		{`{runtime: wasm}`, `field "module": runtime wasm needs a module`},
		{`{runtime: exec, command: [x], module: m.wasm}`, `field "module": only for runtime: wasm`},
		{`{runtime: wasm, module: m.wasm, isolation: in_process, cpu_time: 1s}`, `field "cpu_time": needs isolation: process`},
		{`{runtime: wasm, module: m.wasm, interrupt: false}`, `field "interrupt": only for isolation: in_process`},
		{`{runtime: wasm, module: m.wasm, isolation: in_process, cpus: 0.5}`, `field "cpus": needs isolation: process`},
		{`{runtime: exec, command: [x], isolation: process}`, `field "isolation": only for runtime: wasm`},
		{`{runtime: wasm, module: m.wasm, dir: x}`, `field "dir": only for runtime: exec`},
		{`{runtime: exec, command: [x], interrupt: false}`, `field "interrupt": only for runtime: wasm`},
		{`{runtime: wasm, module: m.wasm, mounts: [data]}`, `want "host:/guest"`},
		{`{runtime: exec, command: [x], min_warm: 5, max_workers: 2}`, `field "min_warm": 5 is more than max_workers (2)`},
		{`{runtime: lua}`, `"lua" is not one of exec, wasm`},
	} {
		_, err := nodestest.Build("function", tc.with, nodes.Deps{})
		require.Error(t, err, tc.with)
		assert.Contains(t, err.Error(), tc.want, tc.with)
		assert.True(t, strings.HasPrefix(err.Error(), "test.yaml:"), "errors carry positions: %v", err)
	}
}
