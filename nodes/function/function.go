// Package function holds the function node: user code in a flow, run as a
// warm pool of worker processes speaking JSON lines (runtime exec) or as
// a WebAssembly module in process (runtime wasm). Both take one JSON
// request and give one JSON response; docs/functions.md is the contract.
package function

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/nodes"
)

const (
	fieldRuntime     = "runtime"
	fieldCommand     = "command"
	fieldModule      = "module"
	fieldName        = "name"
	fieldDir         = "dir"
	fieldEnv         = "env"
	fieldMinWarm     = "min_warm"
	fieldMaxWorkers  = "max_workers"
	fieldMaxRequests = "max_requests"
	fieldMemoryMB    = "memory_mb"
	fieldCPUTime     = "cpu_time"
	fieldBody        = "body"
	fieldMaxOutput   = "max_output"
	fieldMounts      = "mounts"
	fieldInterrupt   = "interrupt"
	fieldIsolation   = "isolation"
	fieldCPUs        = "cpus"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "function",
		Summary: "Run your own code on the message: a worker process (Python, Node, any binary) or a WebAssembly module.",
		Description: "The function gets one JSON request {id, flow, run, attempt, deadline, event, payload, meta, " +
			"object, body_path?} and answers one JSON response {payload?, meta?, error?, permanent?}: its payload " +
			"becomes the run's payload and steps.<id>; meta is merged into the message metadata; an error fails " +
			"the step (transient, retried, unless permanent is true). The step's timeout is the only timeout: past " +
			"it the worker is killed (exec) or the module closed (wasm) and the attempt fails as transient. " +
			"runtime exec runs command as a pool of warm workers, one request in flight each, exchanging one JSON " +
			"object per line on stdin/stdout; a worker that crashes is replaced; stderr goes to the log and its last " +
			"lines to the run record. runtime wasm runs a WASI module with wazero, compiled once (cached under the " +
			"Sluice home): a command reading one request on stdin and writing one response on stdout gets a fresh " +
			"instance per call; a reactor exporting sluice_alloc and sluice_call keeps a pool of instances. By default " +
			"(isolation: process) each instance lives in a wasm host process, Sluice's own executable, killed at the " +
			"deadline like an exec worker; isolation: in_process keeps them inside Sluice. " +
			"Relative paths resolve against the flow file's folder. See docs/functions.md.",
		Fields: []nodes.Field{
			{Name: fieldRuntime, Kind: nodes.Enum, Options: []string{"exec", "wasm"}, Required: true, Doc: "exec: worker processes; wasm: a WebAssembly (WASI) module in process."},
			{Name: fieldCommand, Kind: nodes.StringList, Doc: "exec: the worker's command and arguments, e.g. [python3, handler.py]; arguments naming files in the flow's folder are made absolute."},
			{Name: fieldModule, Kind: nodes.String, Doc: "wasm: the .wasm file."},
			{Name: fieldName, Kind: nodes.String, Doc: "Name in usage and logs; the script's or module's file name by default."},
			{Name: fieldDir, Kind: nodes.String, Doc: "exec: the worker's working directory; the flow file's folder by default."},
			{Name: fieldEnv, Kind: nodes.StringList, Doc: "Environment variables passed to the function (an allow-list; nothing else is, except PATH for exec)."},
			{Name: fieldMinWarm, Kind: nodes.Int, Default: 0, Min: 0, Max: 1024, Doc: "Workers (instances) started ahead, before the first message, and kept: the first requests pay no cold start."},
			{Name: fieldMaxWorkers, Kind: nodes.Int, Default: 0, Min: 0, Max: 1024, Doc: "Most workers (instances) at once, one request in flight each; the flow's concurrency, or the number of CPUs, by default."},
			{Name: fieldMaxRequests, Kind: nodes.Int, Default: 0, Min: 0, Max: 1 << 30, Doc: "Replace a worker (a wasm instance) after this many requests (0: never)."},
			{Name: fieldMemoryMB, Kind: nodes.Int, Default: 0, Min: 0, Max: 1 << 20, Doc: "Memory cap in MiB: exec, each worker's data segment (RLIMIT_DATA; a worker over it fails to allocate); wasm, the module's linear memory (256 by default)."},
			{Name: fieldCPUTime, Kind: nodes.Duration, Doc: "exec, and wasm with isolation: process: CPU time one call may use (RLIMIT_CPU, whole seconds, rounded up); the worker (wasm host) is killed past it."},
			{Name: fieldCPUs, Kind: nodes.Float, Default: 0.0, Min: 0, Max: 1024, Doc: "exec, and wasm with isolation: process: CPUs each worker may use, e.g. 0.5 (cgroup v2 cpu.max). Needs cgroups: where Sluice cannot make one, a warning is logged and it does not apply."},
			{Name: fieldBody, Kind: nodes.Bool, Default: false, Doc: "Hand the message body (an uploaded file) to the function as a file: its path is in the request's body_path."},
			{Name: fieldMaxOutput, Kind: nodes.Int, Default: 4 << 20, Min: 2, Max: 1 << 30, Doc: "Largest response accepted, in bytes; a larger one is a permanent error."},
			{Name: fieldIsolation, Kind: nodes.Enum, Options: []string{"process", "in_process"}, Default: "process", Doc: "wasm: process runs each instance in a wasm host process (Sluice's own executable) with code compiled for speed, killed at the step's deadline like an exec worker; in_process runs instances inside Sluice (less memory, no process start; see interrupt)."},
			{Name: fieldInterrupt, Kind: nodes.Bool, Default: true, Doc: "wasm, isolation: in_process: stop the module at the step's deadline. wazero then leaves the compiled code at every loop header to check, which makes loop-heavy code (a Go guest's JSON) several times slower. false, for trusted modules only: a call past its deadline still fails at once, but the module runs on, holding its slot, until it returns; one that never returns stalls Sluice's garbage collector and with it the whole process."},
			{Name: fieldMounts, Kind: nodes.StringList, Doc: "wasm: folders the module may read, \"host:guest\" (read-only) or \"host:guest:rw\"; nothing else of the filesystem is visible, and WASI gives no network."},
		},
		Examples: []nodes.Example{
			{Title: "A Python function with one warm worker", YAML: "id: count\nnode: function\ntimeout: 2s\nwith:\n  runtime: exec\n  command: [python3, handler.py]\n  min_warm: 1"},
			{Title: "A WebAssembly module", YAML: "node: function\nwith: {runtime: wasm, module: upper.wasm}"},
		},
		New: newFunction,
	})
}

// Function is the function node. It is safe for concurrent use.
type Function struct {
	name      string
	body      bool
	maxOutput int
	rt        runtimeImpl
	tmp       string // folder for body files, made at Start
	seq       atomic.Uint64
}

// runtimeImpl runs calls: exec pools or wasm modules.
type runtimeImpl interface {
	start(ctx context.Context) error
	// call sends one request and returns the decoded response. It fills
	// in c's cold start and stderr tail.
	call(ctx context.Context, c *call) (*response, error)
	close() error
}

// guestFiles is a runtime whose functions see body files under their own
// path (a wasm module's mounted folder).
type guestFiles interface {
	setBodyDir(dir string)
	guestBodyPath(id string) string
}

// call is one request on its way through a runtime.
type call struct {
	id       string
	run      string
	req      []byte // the request, ending in a newline
	bodyFile string // host path of the body file, if any
	cold     bool
	stderr   string // last stderr lines, when the call failed
}

// Request is what a function receives.
type Request struct {
	ID       string            `json:"id"`
	Flow     string            `json:"flow"`
	Run      string            `json:"run"`
	Attempt  int               `json:"attempt"`
	Deadline string            `json:"deadline,omitempty"` // RFC 3339, when the step has a timeout
	Event    nodes.Event       `json:"event"`
	Payload  any               `json:"payload"`
	Meta     map[string]string `json:"meta"`
	Object   map[string]any    `json:"object,omitempty"`
	BodyPath string            `json:"body_path,omitempty"`
	Warmup   bool              `json:"warmup,omitempty"` // sent to each new worker before real work; any answer will do
}

// response is what a function answers (and what a wasm host writes).
type response struct {
	ID        string          `json:"id"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	Meta      map[string]any  `json:"meta,omitempty"`
	Error     string          `json:"error,omitempty"`
	Permanent bool            `json:"permanent,omitempty"`
	// Set by a wasm host only (isolation: process), ignored otherwise.
	HostLog  string `json:"host_log,omitempty"`  // the module's last stderr lines, when the call failed
	HostCold bool   `json:"host_cold,omitempty"` // the host started an instance for the call
}

func newFunction(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	var probs nodes.Problems
	add := func(err error) { probs = append(probs, err.(nodes.Problems)...) }
	flowDir := ""
	if f := c.Pos(fieldRuntime).File; f != "" {
		if abs, err := filepath.Abs(filepath.Dir(f)); err == nil {
			flowDir = abs
		}
	}
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(flowDir, p)
	}
	onlyFor := func(runtime string, fields ...string) {
		for _, f := range fields {
			if c.Has(f) {
				add(c.Errorf(f, "only for runtime: %s", runtime))
			}
		}
	}
	workers := c.Int(fieldMaxWorkers)
	if workers == 0 {
		workers = d.Concurrency
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	minWarm := c.Int(fieldMinWarm)
	if minWarm > workers {
		add(c.Errorf(fieldMinWarm, "%d is more than max_workers (%d)", minWarm, workers))
	}
	f := &Function{name: c.String(fieldName), body: c.Bool(fieldBody), maxOutput: c.Int(fieldMaxOutput)}
	switch c.String(fieldRuntime) {
	case "exec":
		onlyFor("wasm", fieldModule, fieldMounts, fieldInterrupt, fieldIsolation)
		cmd := c.Strings(fieldCommand)
		if len(cmd) == 0 || cmd[0] == "" {
			add(c.Errorf(fieldCommand, "runtime exec needs a command, e.g. [python3, handler.py]"))
			break
		}
		if f.name == "" {
			f.name = defaultName(cmd)
		}
		dir := resolve(c.String(fieldDir))
		if dir == "" {
			dir = flowDir
		}
		f.rt = &execPool{
			name: f.name, command: cmd, flowDir: flowDir, dir: dir, env: c.Strings(fieldEnv),
			minWarm: minWarm, maxWorkers: workers, maxRequests: c.Int(fieldMaxRequests),
			memory: int64(c.Int(fieldMemoryMB)) << 20, cpu: c.Duration(fieldCPUTime), cpus: c.Float(fieldCPUs), maxOutput: f.maxOutput,
			log: d.Logger,
		}
	case "wasm":
		onlyFor("exec", fieldCommand, fieldDir)
		inProcess := c.String(fieldIsolation) == "in_process"
		for _, f := range []string{fieldCPUTime, fieldCPUs} {
			if inProcess && c.Has(f) {
				add(c.Errorf(f, "needs isolation: process (a call inside Sluice has no CPU clock of its own)"))
			}
		}
		if !inProcess && c.Has(fieldInterrupt) {
			add(c.Errorf(fieldInterrupt, "only for isolation: in_process (a wasm host process is killed at the deadline)"))
		}
		mod := c.String(fieldModule)
		if mod == "" {
			add(c.Errorf(fieldModule, "runtime wasm needs a module, e.g. upper.wasm"))
			break
		}
		if f.name == "" {
			f.name = strings.TrimSuffix(filepath.Base(mod), ".wasm")
		}
		var mounts []mount
		for _, m := range c.Strings(fieldMounts) {
			mt, err := parseMount(m, resolve)
			if err != nil {
				add(c.Errorf(fieldMounts, "%s", err))
				continue
			}
			mounts = append(mounts, mt)
		}
		mem := c.Int(fieldMemoryMB)
		if mem == 0 {
			mem = 256
		}
		if mem > 4096 {
			add(c.Errorf(fieldMemoryMB, "a 32-bit WebAssembly memory holds at most 4096 MiB"))
		}
		cache := ""
		if d.StateDir != "" {
			cache = filepath.Join(d.StateDir, "wasm-cache")
		}
		wm := &wasmModule{
			name: f.name, path: resolve(mod), env: c.Strings(fieldEnv), mounts: mounts,
			minWarm: minWarm, maxInstances: workers, memoryPages: uint32(mem) * 16, maxOutput: f.maxOutput,
			cacheDir: cache, log: d.Logger, interrupt: c.Bool(fieldInterrupt), maxRequests: c.Int(fieldMaxRequests),
		}
		f.rt = wm
		if !inProcess {
			f.rt = &wasmHosts{mod: wm, pool: &execPool{
				name: f.name, dir: flowDir, env: wm.env, minWarm: minWarm, maxWorkers: workers,
				maxRequests: c.Int(fieldMaxRequests), cpu: c.Duration(fieldCPUTime), cpus: c.Float(fieldCPUs), maxOutput: f.maxOutput, log: d.Logger,
			}}
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return f, nil
}

// defaultName is the script's file name: the first argument that looks
// like a file (handler.py), else the command's base name.
func defaultName(cmd []string) string {
	for _, a := range cmd[1:] {
		if !strings.HasPrefix(a, "-") && filepath.Ext(a) != "" {
			return filepath.Base(a)
		}
	}
	return filepath.Base(cmd[0])
}

// Start makes the body folder and starts the runtime (min_warm workers,
// the module's compilation).
func (f *Function) Start(ctx context.Context) error {
	if f.body {
		dir, err := os.MkdirTemp("", "sluice-fn-")
		if err != nil {
			return fmt.Errorf("function %s: body folder: %w", f.name, err)
		}
		f.tmp = dir
		if w, ok := f.rt.(guestFiles); ok {
			w.setBodyDir(dir)
		}
	}
	if err := f.rt.start(ctx); err != nil {
		return fmt.Errorf("function %s: %w", f.name, err)
	}
	return nil
}

// Close stops the workers (or instances) and removes the body folder.
func (f *Function) Close() error {
	err := f.rt.close()
	if f.tmp != "" {
		err = errors.Join(err, os.RemoveAll(f.tmp))
	}
	return err
}

// Process calls the function once with the message and applies its
// response. Every call is metered, failed ones included.
func (f *Function) Process(ctx context.Context, env *nodes.Envelope) error {
	c := &call{id: strconv.FormatUint(f.seq.Add(1), 36), run: env.Run}
	req := Request{
		ID: c.id, Flow: env.Flow, Run: env.Run, Attempt: max(env.Attempt(), 1), Event: env.Event,
		Payload: env.Payload, Meta: env.Meta,
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = dl.UTC().Format(time.RFC3339Nano)
	}
	if env.Object != nil {
		req.Object = nodes.ObjectMap(*env.Object)
	}
	var bytesIn int64
	if f.body {
		body, err := env.Body(ctx)
		if err != nil {
			return err
		}
		if body != nil {
			c.bodyFile = filepath.Join(f.tmp, c.id)
			if err := os.WriteFile(c.bodyFile, body, 0o644); err != nil {
				return fmt.Errorf("function %s: write body file: %w", f.name, err)
			}
			defer os.Remove(c.bodyFile)
			req.BodyPath = c.bodyFile
			if w, ok := f.rt.(guestFiles); ok {
				req.BodyPath = w.guestBodyPath(c.id)
			}
			bytesIn += int64(len(body))
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil { // ends in a newline
		return nodes.Permanent(fmt.Errorf("function %s: encode request: %w", f.name, err))
	}
	c.req = buf.Bytes()
	bytesIn += int64(len(c.req))

	start := time.Now()
	resp, err := f.rt.call(ctx, c)
	if err == nil && resp.Error != "" {
		err = fmt.Errorf("function %s: %s", f.name, resp.Error)
		if resp.Permanent {
			err = nodes.Permanent(err)
		}
	}
	var payload any
	if err == nil && len(resp.Payload) > 0 {
		if perr := json.Unmarshal(resp.Payload, &payload); perr != nil {
			err = nodes.Permanent(fmt.Errorf("function %s: response payload: %w", f.name, perr))
		}
	}
	mc := nodes.Call{Kind: "function", Name: f.name, Duration: time.Since(start), ColdStart: c.cold, BytesIn: bytesIn}
	if err != nil {
		mc.Error = err.Error()
		env.SetLog(c.stderr)
	}
	env.Meter(mc)
	if err != nil {
		return err
	}
	if len(resp.Payload) > 0 {
		env.Payload = payload
	}
	for k, v := range resp.Meta {
		if s, ok := v.(string); ok {
			env.Meta[k] = s
		} else if b, err := json.Marshal(v); err == nil {
			env.Meta[k] = string(b)
		}
	}
	env.SetResult(env.Payload)
	return nil
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

// errTooLarge is a response over max_output.
func errTooLarge(name string, limit int) error {
	return nodes.Permanent(fmt.Errorf("function %s: response larger than max_output (%d bytes)", name, limit))
}

// errTimeout is a call past the step's deadline: transient, like any
// timeout; it wraps the context's error so the engine names the timeout.
func errTimeout(name string, ctx context.Context, what string) error {
	return fmt.Errorf("function %s: no answer before the step's deadline; %s: %w", name, what, context.Cause(ctx))
}

var (
	_ nodes.Node    = (*Function)(nil)
	_ nodes.Starter = (*Function)(nil)
	_ nodes.Closer  = (*Function)(nil)
)
