package function

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sluicehq/sluice/nodes"
)

// Reactor exports: a module exporting both (and _initialize) keeps its
// instances between calls. sluice_alloc(size) returns where to write a
// request of size bytes; sluice_call(ptr, size) handles it and returns the
// response's place as ptr<<32 | size.
const (
	exportAlloc = "sluice_alloc"
	exportCall  = "sluice_call"
	guestBodies = "/sluice/in" // where body files appear inside the module
)

// mount is a host folder the module may see.
type mount struct {
	Host  string `json:"host"`
	Guest string `json:"guest"`
	RW    bool   `json:"rw,omitempty"`
}

func parseMount(s string, resolve func(string) string) (mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") || len(parts) == 3 && parts[2] != "rw" && parts[2] != "ro" {
		return mount{}, fmt.Errorf("mount %q: want \"host:/guest\", \"host:/guest:ro\" or \"host:/guest:rw\"", s)
	}
	return mount{Host: resolve(parts[0]), Guest: parts[1], RW: len(parts) == 3 && parts[2] == "rw"}, nil
}

// wasmModule is runtime wasm: one compiled module, run as a fresh instance
// per call (a WASI command) or from a pool of kept instances (a reactor).
type wasmModule struct {
	name         string
	path         string
	env          []string
	mounts       []mount
	bodyDir      string // host folder of body files, mounted at guestBodies
	minWarm      int
	maxInstances int
	memoryPages  uint32
	maxOutput    int
	cacheDir     string
	interrupt    bool      // close the module at the deadline (wazero's checks at every loop)
	maxRequests  int       // drop a reactor instance after this many calls (0: never)
	stderr       io.Writer // also gets the module's stderr (the wasm host's own stderr)
	host         bool      // this is a wasm host's module: the parent kills the process at the deadline
	log          *slog.Logger

	rt       wazero.Runtime
	cache    wazero.CompilationCache
	compiled wazero.CompiledModule
	reactor  bool
	tokens   chan struct{}
	idle     chan *instance
}

func (m *wasmModule) guestBodyPath(id string) string { return path.Join(guestBodies, id) }
func (m *wasmModule) setBodyDir(dir string)          { m.bodyDir = dir }

func (m *wasmModule) start(ctx context.Context) error {
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if !m.interrupt && !m.host {
		m.log.Warn("function: interrupt: false: a call that never returns cannot be stopped and stalls Sluice's garbage collector; use it for trusted modules only, or isolation: process", "function", m.name)
	}
	code, err := os.ReadFile(m.path)
	if err != nil {
		return nodes.Permanent(fmt.Errorf("module: %w", err))
	}
	cfg := wazero.NewRuntimeConfig().WithMemoryLimitPages(m.memoryPages).WithCloseOnContextDone(m.interrupt)
	if m.cacheDir != "" {
		// wazero's cache key leaves out whether the code checks for the
		// close at every loop: each kind gets its own folder, or a module
		// compiled without the checks would be loaded as interruptible.
		dir := filepath.Join(m.cacheDir, "plain")
		if m.interrupt {
			dir = filepath.Join(m.cacheDir, "interruptible")
		}
		if m.cache, err = wazero.NewCompilationCacheWithDir(dir); err != nil {
			return fmt.Errorf("compilation cache %s: %w", dir, err)
		}
		cfg = cfg.WithCompilationCache(m.cache)
	}
	m.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return fmt.Errorf("wasi: %w", err)
	}
	if m.compiled, err = m.rt.CompileModule(ctx, code); err != nil {
		return nodes.Permanent(fmt.Errorf("module %s: %w", m.path, err))
	}
	ex := m.compiled.ExportedFunctions()
	_, alloc := ex[exportAlloc]
	_, call := ex[exportCall]
	_, cmd := ex["_start"]
	m.reactor = alloc && call && !cmd // a command may carry the exports too (the Go helper does)
	if !m.reactor && !cmd {
		return nodes.Permanent(fmt.Errorf("module %s exports neither _start (a WASI command) nor %s and %s (a reactor)", m.path, exportAlloc, exportCall))
	}
	if m.reactor {
		i32, i64 := api.ValueTypeI32, api.ValueTypeI64
		if err := errors.Join(
			checkSignature(ex[exportAlloc], []api.ValueType{i32}, []api.ValueType{i32}),
			checkSignature(ex[exportCall], []api.ValueType{i32, i32}, []api.ValueType{i64}),
		); err != nil {
			return nodes.Permanent(fmt.Errorf("module %s: %w", m.path, err))
		}
	}
	m.tokens = make(chan struct{}, m.maxInstances)
	m.idle = make(chan *instance, m.maxInstances)
	if m.reactor {
		for range m.minWarm {
			in, err := m.instantiate(ctx)
			if err != nil {
				return err
			}
			m.idle <- in
		}
	}
	return nil
}

// checkSignature tells whether an export takes and returns what Sluice
// passes it (calls go through CallWithStack, which does not check).
func checkSignature(f api.FunctionDefinition, params, results []api.ValueType) error {
	if slices.Equal(f.ParamTypes(), params) && slices.Equal(f.ResultTypes(), results) {
		return nil
	}
	return fmt.Errorf("export %s is %s, want %s", f.ExportNames()[0], signature(f.ParamTypes(), f.ResultTypes()), signature(params, results))
}

func signature(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ", ")
	}
	return "(" + names(params) + ") -> (" + names(results) + ")"
}

// closeWait bounds how long close waits for calls still running.
const closeWait = 5 * time.Second

// close waits for the calls still running (each holds a slot) and then
// closes the instances and the runtime. A call that does not return in
// time (interrupt: false, past its deadline) keeps the runtime open: it
// is left to the process's end rather than closed under the call.
func (m *wasmModule) close() error {
	if m.rt == nil {
		return nil
	}
	timer := time.NewTimer(closeWait)
	defer timer.Stop()
	for range cap(m.tokens) {
		select {
		case m.tokens <- struct{}{}:
		case <-timer.C:
			m.log.Warn("function: a call is still running; the module stays loaded until Sluice exits", "function", m.name)
			return fmt.Errorf("function %s: a call is still running after %s; module left open", m.name, closeWait)
		}
	}
	ctx := context.Background()
	for done := false; !done; {
		select {
		case in := <-m.idle:
			_ = in.mod.Close(ctx)
		default:
			done = true
		}
	}
	err := m.rt.Close(ctx)
	if m.cache != nil {
		err = errors.Join(err, m.cache.Close(ctx))
	}
	return err
}

// moduleConfig is what every instance gets: clocks, randomness, the
// allowed environment and folders, and a sleep that ends with the call's
// context (so a sleeping guest is stopped at its deadline too).
func (m *wasmModule) moduleConfig(done *atomic.Pointer[context.Context], stderr *tailWriter) wazero.ModuleConfig {
	var errw io.Writer = stderr
	if m.stderr != nil {
		errw = io.MultiWriter(stderr, m.stderr)
	}
	cfg := wazero.NewModuleConfig().WithName("").WithArgs(m.name).
		WithSysWalltime().WithSysNanotime().WithRandSource(rand.Reader).
		WithStderr(errw).
		WithNanosleep(func(ns int64) {
			t := time.NewTimer(time.Duration(ns))
			defer t.Stop()
			var dc <-chan struct{}
			if p := done.Load(); p != nil && m.interrupt {
				// Without interruption a woken guest would only sleep
				// again, in a busy loop: let it sleep.
				dc = (*p).Done()
			}
			select {
			case <-t.C:
			case <-dc:
			}
		})
	for _, k := range m.env {
		if v, ok := os.LookupEnv(k); ok {
			cfg = cfg.WithEnv(k, v)
		}
	}
	fsc := wazero.NewFSConfig()
	for _, mt := range m.mounts {
		if mt.RW {
			fsc = fsc.WithDirMount(mt.Host, mt.Guest)
		} else {
			fsc = fsc.WithReadOnlyDirMount(mt.Host, mt.Guest)
		}
	}
	if m.bodyDir != "" {
		fsc = fsc.WithReadOnlyDirMount(m.bodyDir, guestBodies)
	}
	return cfg.WithFSConfig(fsc)
}

func (m *wasmModule) call(ctx context.Context, c *call) (*response, error) {
	select {
	case m.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, errTimeout(m.name, ctx, fmt.Sprintf("all %d instances stayed busy", m.maxInstances))
	}
	if m.interrupt {
		defer func() { <-m.tokens }()
		return m.invoke(ctx, c)
	}
	// Not interruptible: the call runs on its own goroutine, which keeps
	// the slot until the module returns, even past the deadline.
	type result struct {
		resp *response
		err  error
		c    call
	}
	done := make(chan result, 1)
	cc := *c
	go func() {
		defer func() { <-m.tokens }()
		resp, err := m.invoke(ctx, &cc)
		done <- result{resp, err, cc}
	}()
	select {
	case r := <-done:
		c.cold, c.stderr = r.c.cold, r.c.stderr
		return r.resp, r.err
	case <-ctx.Done():
		m.log.Warn("function call past its deadline keeps running (interrupt: false)", "function", m.name, "run", c.run)
		return nil, errTimeout(m.name, ctx, "the module runs on (interrupt: false)")
	}
}

// invoke runs one call on a new instance (a command) or a kept one (a
// reactor) and decodes the response. The caller holds a slot.
func (m *wasmModule) invoke(ctx context.Context, c *call) (*response, error) {
	var resp *response
	err := m.invokeRaw(ctx, c, func(out []byte) (err error) {
		if resp, err = decodeResponse(m.name, out, ""); err == nil {
			resp.Payload = bytes.Clone(resp.Payload) // out is the instance's memory
		}
		return err
	})
	return resp, err
}

// invokeRaw runs one call and hands the module's response, as it wrote
// it, to use, whose error is the call's (a reactor instance is then
// dropped). The bytes are only valid during use: for a reactor they are
// the instance's own memory.
func (m *wasmModule) invokeRaw(ctx context.Context, c *call, use func([]byte) error) error {
	if m.reactor {
		return m.callReactor(ctx, c, use)
	}
	return m.callCommand(ctx, c, use)
}

// callCommand runs a fresh instance of a WASI command on the request:
// every call starts one, so every call is a cold start.
func (m *wasmModule) callCommand(ctx context.Context, c *call, use func([]byte) error) error {
	c.cold = true
	var done atomic.Pointer[context.Context]
	done.Store(&ctx)
	stderr := &tailWriter{}
	out := &cappedBuffer{max: m.maxOutput}
	cfg := m.moduleConfig(&done, stderr).WithStdin(bytes.NewReader(c.req)).WithStdout(out)
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, cfg)
	if mod != nil {
		_ = mod.Close(context.Background())
	}
	if err != nil {
		var ee *sys.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 0 {
			c.stderr = stderr.tail()
			return m.failure(ctx, err, c.stderr)
		}
	}
	if out.over {
		return errTooLarge(m.name, m.maxOutput)
	}
	return use(out.buf.Bytes())
}

// failure classifies an instance's error: the deadline (transient, as
// every timeout), or a crash: a trap or a non-zero exit (transient).
func (m *wasmModule) failure(ctx context.Context, err error, tail string) error {
	if ctx.Err() != nil {
		return errTimeout(m.name, ctx, "the module was closed")
	}
	hint := ""
	if strings.Contains(tail, "out of memory") || strings.Contains(err.Error(), "out of memory") {
		hint = fmt.Sprintf(" (memory_mb: %d)", m.memoryPages/16)
	}
	return fmt.Errorf("function %s: module crashed during the call%s: %w", m.name, hint, err)
}

// instance is a kept reactor instance.
type instance struct {
	mod         api.Module
	alloc, call api.Function
	mem         api.Memory
	done        atomic.Pointer[context.Context]
	stderr      *tailWriter
	requests    int
	stack       [2]uint64 // the calls' parameters and results
}

func (m *wasmModule) instantiate(ctx context.Context) (*instance, error) {
	in := &instance{stderr: &tailWriter{}}
	in.done.Store(&ctx)
	cfg := m.moduleConfig(&in.done, in.stderr).WithStartFunctions("_initialize")
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, cfg)
	if err != nil && ctx.Err() != nil { // the call's deadline, not the module
		return nil, errTimeout(m.name, ctx, "a new instance was starting")
	}
	if err != nil {
		return nil, nodes.Permanent(fmt.Errorf("module %s did not start: %w; stderr: %s", m.path, err, in.stderr.tail()))
	}
	in.mod, in.alloc, in.call, in.mem = mod, mod.ExportedFunction(exportAlloc), mod.ExportedFunction(exportCall), mod.Memory()
	if in.mem == nil {
		_ = mod.Close(ctx)
		return nil, nodes.Permanent(fmt.Errorf("module %s exports no memory", m.path))
	}
	return in, nil
}

// callReactor runs the request on a kept instance (a new one when none is
// idle); an instance that failed is dropped.
func (m *wasmModule) callReactor(ctx context.Context, c *call, use func([]byte) error) error {
	var in *instance
	select {
	case in = <-m.idle:
	default:
		var err error
		if in, err = m.instantiate(ctx); err != nil {
			return err
		}
		c.cold = true
	}
	in.done.Store(&ctx)
	in.stderr.reset()
	keep, err := m.roundTrip(ctx, in, c, use)
	if err != nil {
		c.stderr = in.stderr.tail()
	}
	if in.requests++; m.maxRequests > 0 && in.requests >= m.maxRequests {
		keep = false
	}
	if keep {
		m.idle <- in
	} else {
		_ = in.mod.Close(context.Background())
	}
	return err
}

// roundTrip writes the request into the instance's memory where
// sluice_alloc says, calls sluice_call and hands its answer to use; it
// reports whether the instance may be called again.
func (m *wasmModule) roundTrip(ctx context.Context, in *instance, c *call, use func([]byte) error) (bool, error) {
	req := bytes.TrimSuffix(c.req, []byte("\n"))
	stack := in.stack[:]
	stack[0] = uint64(len(req))
	if err := in.alloc.CallWithStack(ctx, stack); err != nil {
		return false, m.failure(ctx, err, in.stderr.tail())
	}
	ptr := uint32(stack[0])
	if !in.mem.Write(ptr, req) {
		return false, fmt.Errorf("function %s: %s returned %d, outside memory", m.name, exportAlloc, ptr)
	}
	stack[0], stack[1] = uint64(ptr), uint64(len(req))
	if err := in.call.CallWithStack(ctx, stack); err != nil {
		return false, m.failure(ctx, err, in.stderr.tail())
	}
	rptr, rlen := uint32(stack[0]>>32), uint32(stack[0])
	if int(rlen) > m.maxOutput {
		return true, errTooLarge(m.name, m.maxOutput)
	}
	out, ok := in.mem.Read(rptr, rlen)
	if !ok {
		return false, fmt.Errorf("function %s: %s answered outside memory", m.name, exportCall)
	}
	err := use(out) // before the instance is called again: out is its memory
	return err == nil, err
}

// cappedBuffer keeps up to max bytes and notes whether more came.
type cappedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.over || b.buf.Len()+len(p) > b.max {
		b.over = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

// tailWriter keeps the last lines written to it (a module's stderr).
type tailWriter struct {
	mu      sync.Mutex
	lines   []string
	partial string
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.partial + string(p)
	parts := strings.Split(s, "\n")
	t.partial = parts[len(parts)-1]
	if len(t.partial) > 4096 {
		t.partial = t.partial[:4096]
	}
	for _, l := range parts[:len(parts)-1] {
		if len(l) > 500 {
			l = l[:500] + "…"
		}
		t.lines = append(t.lines, l)
	}
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
	return len(p), nil
}

func (t *tailWriter) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(t.lines, "\n")
	if t.partial != "" {
		s = strings.TrimPrefix(s+"\n"+t.partial, "\n")
	}
	return s
}

func (t *tailWriter) reset() {
	t.mu.Lock()
	t.lines, t.partial = nil, ""
	t.mu.Unlock()
}
