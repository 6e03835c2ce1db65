package function

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/functions"
	"github.com/sluicehq/sluice/nodes"
)

// startTimeout bounds a new worker's start: spawning it and its answer to
// the warm-up request.
const startTimeout = 30 * time.Second

// execPool is runtime exec: a pool of warm worker processes, each with one
// request in flight. tokens bounds the workers that exist or are being
// started to maxWorkers; idle holds the ones waiting for work.
type execPool struct {
	name        string
	command     []string
	flowDir     string
	dir         string
	env         []string
	minWarm     int
	maxWorkers  int
	maxRequests int
	memory      int64
	cpu         time.Duration
	cpus        float64 // cgroup cpu.max, in CPUs
	maxOutput   int
	log         *slog.Logger
	extraEnv    []string      // set as they are (the wasm host's configuration)
	startWait   time.Duration // bound on a new worker's start; startTimeout by default
	noHelpers   bool          // no Python and Node helpers on the module paths
	direct      bool          // the caller reads each answer itself (wasm hosts: no stray output)

	argv   []string // command with file arguments made absolute, at start
	sdkDir string   // the Python and Node helpers, on the workers' module paths
	envv   []string
	tokens chan struct{}
	idle   chan *worker
	live   atomic.Int64
	noCg   sync.Once       // logs once why workers have no cgroup
	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

func (p *execPool) start(ctx context.Context) error {
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.argv = make([]string, len(p.command))
	copy(p.argv, p.command)
	for i, a := range p.argv {
		if filepath.IsAbs(a) || strings.HasPrefix(a, "-") || p.flowDir == "" {
			continue
		}
		if abs := filepath.Join(p.flowDir, a); fileExists(abs) && (i > 0 || strings.Contains(a, "/")) {
			p.argv[i] = abs
		}
	}
	if _, err := exec.LookPath(p.argv[0]); err != nil {
		return nodes.Permanent(fmt.Errorf("command %q: %w", p.argv[0], err))
	}
	paths := map[string]string{}
	if !p.noHelpers {
		sdk, err := writeSDK()
		if err != nil {
			return err
		}
		p.sdkDir = sdk
		paths = map[string]string{"PYTHONPATH": filepath.Join(sdk, "python"), "NODE_PATH": filepath.Join(sdk, "node")}
	}
	p.envv = append([]string{"PATH=" + os.Getenv("PATH")}, p.extraEnv...)
	for _, k := range p.env {
		if v, ok := os.LookupEnv(k); ok {
			if extra, ok := paths[k]; ok {
				paths[k] = v + string(filepath.ListSeparator) + extra
				continue
			}
			p.envv = append(p.envv, k+"="+v)
		}
	}
	for k, v := range paths {
		p.envv = append(p.envv, k+"="+v)
	}
	p.tokens = make(chan struct{}, p.maxWorkers)
	p.idle = make(chan *worker, p.maxWorkers)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p.warm(ctx, p.minWarm)
}

// warm starts n workers side by side and adds them to the idle ones; the
// first failure fails it.
func (p *execPool) warm(ctx context.Context, n int) error {
	errs := make(chan error, n)
	for range n {
		p.tokens <- struct{}{}
		go func() {
			w, err := p.spawn(ctx)
			if err == nil {
				p.idle <- w
			}
			<-p.tokens
			errs <- err
		}()
	}
	var werr error
	for range n {
		werr = errors.Join(werr, <-errs)
	}
	return werr
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func (p *execPool) close() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	p.bg.Wait()
	for {
		select {
		case w := <-p.idle:
			w.kill()
			w.wait()
		default:
			return os.RemoveAll(p.sdkDir)
		}
	}
}

// writeSDK copies the function helpers into a new temporary folder.
func writeSDK() (string, error) {
	dir, err := os.MkdirTemp("", "sluice-sdk-")
	if err != nil {
		return "", fmt.Errorf("function helpers: %w", err)
	}
	err = fs.WalkDir(functions.SDK, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := functions.SDK.ReadFile(name)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), b, 0o644)
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("function helpers: %w", err)
	}
	return dir, nil
}

func (p *execPool) call(ctx context.Context, c *call) (*response, error) {
	select {
	case p.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, errTimeout(p.name, ctx, fmt.Sprintf("all %d workers stayed busy", p.maxWorkers))
	}
	defer func() { <-p.tokens }()
	var w *worker
	select {
	case w = <-p.idle:
		if len(w.lines) > 0 || w.stdout != nil && w.stdout.Buffered() > 0 { // it wrote more lines than it was asked for: out of step
			p.log.Warn("function worker wrote output nobody asked for; replacing it (write logs to stderr)", "function", p.name, "pid", w.pid)
			p.retire(w)
			w = nil
		}
	default:
	}
	if w == nil {
		var err error
		if w, err = p.spawn(ctx); err != nil {
			return nil, err
		}
		c.cold = true
	}
	resp, err := w.call(ctx, c, p)
	if err != nil || (p.maxRequests > 0 && w.requests >= p.maxRequests) {
		p.retire(w)
		return resp, err
	}
	p.idle <- w // never blocks: idle holds at most maxWorkers, and we hold a token
	return resp, nil
}

// retire kills w and, when fewer than min_warm workers are left, starts a
// replacement in the background.
func (p *execPool) retire(w *worker) {
	w.kill()
	if p.ctx.Err() != nil {
		return // closing: its own goroutine reaps it
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		w.wait()
		if int(p.live.Load()) >= p.minWarm || p.ctx.Err() != nil {
			return
		}
		select {
		case p.tokens <- struct{}{}:
		default:
			return // every slot is busy: a call will start one when needed
		}
		defer func() { <-p.tokens }()
		ctx, cancel := context.WithTimeout(p.ctx, p.startBound())
		defer cancel()
		nw, err := p.spawn(ctx)
		if err != nil {
			p.log.Warn("function worker: replacement did not start", "function", p.name, "error", err)
			return
		}
		p.idle <- nw
	}()
}

func (p *execPool) startBound() time.Duration {
	if p.startWait > 0 {
		return p.startWait
	}
	return startTimeout
}

// spawn starts a worker and waits for its answer to a warm-up request,
// so a worker in the pool is ready. A worker that cannot start or exits
// before answering is a permanent error naming the cause.
func (p *execPool) spawn(ctx context.Context) (*worker, error) {
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir, cmd.Env = p.dir, p.envv
	setProcAttr(cmd)
	w := &worker{name: p.name, cmd: cmd, maxOutput: p.maxOutput, lines: make(chan line, 1), exited: make(chan struct{}), stderrDone: make(chan struct{}), log: p.log}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cg := p.cgroup(cmd)
	if err := cmd.Start(); err != nil {
		if cg != nil {
			cg.remove()
		}
		return nil, nodes.Permanent(fmt.Errorf("cannot start worker %q: %w", strings.Join(p.command, " "), err))
	}
	w.stdin, w.pid = stdin, cmd.Process.Pid
	if err := setLimits(w.pid, p.memory); err != nil {
		w.kill()
		return nil, fmt.Errorf("worker limits: %w", err)
	}
	p.live.Add(1)
	if f, ok := stdout.(*os.File); ok && p.direct {
		// A blocking read in the calling goroutine wakes it straight
		// from the pipe, where the reader goroutine's answer costs a
		// netpoller wake-up and a hand-over (~5 µs of a wasm call).
		// Killing the worker (the deadline) ends the read.
		f.Fd() // sets blocking mode
		w.stdout = bufio.NewReaderSize(f, 64<<10)
	} else {
		go w.readStdout(stdout)
	}
	go w.readStderr(stderr)
	go func() {
		<-w.stderrDone // Wait closes the pipes: read them to the end first
		w.waitErr = cmd.Wait()
		if cg != nil {
			w.oom = cg.oomKilled()
			cg.remove()
		}
		p.live.Add(-1)
		close(w.exited)
	}()

	wctx, cancel := context.WithTimeout(ctx, p.startBound())
	defer cancel()
	warm := &call{id: "warmup", run: "", req: []byte(`{"id":"warmup","warmup":true}` + "\n")}
	if _, err := w.roundTrip(wctx, warm, 0); err != nil {
		w.kill()
		w.wait()
		if ctx.Err() != nil {
			return nil, errTimeout(p.name, ctx, "a new worker was starting")
		}
		tail := w.tail()
		msg := fmt.Sprintf("worker %q did not start: %v", strings.Join(p.command, " "), err)
		if tail != "" {
			msg += "; stderr: " + tail
		}
		return nil, nodes.Permanent(errors.New(msg))
	}
	w.requests = 0
	return w, nil
}

// worker is one process of the pool. Only the call holding it uses it.
type worker struct {
	name      string
	cmd       *exec.Cmd
	pid       int
	stdin     io.WriteCloser
	maxOutput int
	lines     chan line
	stdout    *bufio.Reader // direct: read by the call itself, no reader goroutine
	log       *slog.Logger
	requests  int

	run        atomic.Pointer[string] // the run being served, for stderr logs
	mu         sync.Mutex
	last       []string // the last stderr lines
	stderrDone chan struct{}
	exited     chan struct{}
	waitErr    error
	oom        bool // its cgroup's memory.max killed it
}

// line is one line of a worker's stdout.
type line struct {
	data     []byte
	tooLarge bool
	err      error
}

const tailLines = 20

func (w *worker) readStdout(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		l := w.readLine(br)
		w.lines <- l
		if l.err != nil {
			return
		}
	}
}

// readLine reads one line from a worker's stdout.
func (w *worker) readLine(br *bufio.Reader) line {
	data, tooLarge, err := readLine(br, nil, w.maxOutput+1) // +1: the newline
	if err != nil {
		return line{err: err}
	}
	return line{data: data, tooLarge: tooLarge}
}

// readLine appends the next line of br, newline included, to buf, up to
// limit bytes: past it the line is read to its end but not kept (buf is
// returned as it was, with tooLarge set).
func readLine(br *bufio.Reader, buf []byte, limit int) (_ []byte, tooLarge bool, _ error) {
	n := len(buf)
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLarge {
			if len(buf)-n+len(chunk) > limit {
				tooLarge, buf = true, buf[:n]
			} else {
				buf = append(buf, chunk...)
			}
		}
		if err != bufio.ErrBufferFull {
			return buf, tooLarge, err
		}
	}
}

func (w *worker) readStderr(r io.Reader) {
	defer close(w.stderrDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		text := sc.Text()
		run := ""
		if p := w.run.Load(); p != nil {
			run = *p
		}
		w.log.Info("function stderr", "function", w.name, "pid", w.pid, "run", run, "line", text)
		if len(text) > 500 {
			text = text[:500] + "…"
		}
		w.mu.Lock()
		w.last = append(w.last, text)
		if len(w.last) > tailLines {
			w.last = w.last[len(w.last)-tailLines:]
		}
		w.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// tail returns the last stderr lines.
func (w *worker) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.last, "\n")
}

func (w *worker) kill() { killGroup(w.cmd) }

func (w *worker) wait() { <-w.exited }

// call runs one request on the worker.
func (w *worker) call(ctx context.Context, c *call, p *execPool) (*response, error) {
	w.run.Store(&c.run)
	defer w.run.Store(nil)
	if p.cpu > 0 {
		if err := limitCPU(w.pid, p.cpu); err != nil {
			return nil, fmt.Errorf("function %s: cpu_time: %w", p.name, err)
		}
	}
	w.mu.Lock()
	w.last = nil // the tail of this call only
	w.mu.Unlock()
	resp, err := w.roundTrip(ctx, c, p.maxOutput)
	if err != nil {
		c.stderr = w.tail()
	}
	return resp, err
}

// roundTrip writes c's request and reads the answer. The context's end
// kills the worker, which ends both.
func (w *worker) roundTrip(ctx context.Context, c *call, maxOutput int) (*response, error) {
	w.requests++
	killed := atomic.Bool{}
	stop := context.AfterFunc(ctx, func() { killed.Store(true); w.kill() })
	defer stop()
	_, werr := w.stdin.Write(c.req)
	var l line
	if werr != nil {
		l.err = werr
	} else if w.stdout != nil {
		l = w.readLine(w.stdout)
	} else {
		select {
		case l = <-w.lines:
		case <-w.exited:
			select { // an answer written just before exiting still counts
			case l = <-w.lines:
			default:
				l.err = io.EOF
			}
		}
	}
	if killed.Load() {
		w.wait()
		return nil, errTimeout(w.name, ctx, "the worker was killed")
	}
	if l.err != nil {
		w.kill()
		w.wait()
		c.stderr = w.tail()
		reason := exitReason(w.waitErr)
		if w.oom {
			reason += ", memory_mb reached: cgroup memory.max"
		}
		return nil, fmt.Errorf("function %s: worker crashed during the call (%s)", w.name, reason)
	}
	if l.tooLarge {
		return nil, errTooLarge(w.name, maxOutput)
	}
	return decodeResponse(w.name, l.data, c.id)
}

// cgroup gives the worker cmd will start a cgroup of its own when it has
// limits a cgroup enforces and cgroups are available; otherwise it logs
// why, once, and the rlimits alone apply.
func (p *execPool) cgroup(cmd *exec.Cmd) *workerCgroup {
	if p.memory <= 0 && p.cpus <= 0 {
		return nil
	}
	dir, err := workerCgroups()
	var cg *workerCgroup
	if err == nil {
		cg, err = newWorkerCgroup(dir, cmd, p.memory, p.cpus)
	}
	if err != nil {
		p.noCg.Do(func() {
			msg := "function workers: no cgroup of their own; memory_mb is RLIMIT_DATA per process"
			if p.cpus > 0 {
				msg += "; cpus is not applied"
			}
			p.log.Warn(msg, "function", p.name, "reason", err)
		})
	}
	return cg
}

// exitReason describes how a process ended.
func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}
