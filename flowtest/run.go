package flowtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/internal/syncbuf"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/ai"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

// Options configure how test files run.
type Options struct {
	// LogLevel is the level from which a case's engine logs are kept,
	// with its result (CaseResult.Log); slog.LevelWarn when nil (dead
	// letters, failed attempts, errors).
	LogLevel slog.Leveler
	// Run selects cases by name (like go test -run); all when nil.
	Run *regexp.Regexp
	// CI makes a missing ONNX Runtime fail the cases that need it rather
	// than skip them (CI provides it: scripts/models.sh).
	CI bool
	// Parallel is how many cases of a file run at once; twice the CPUs
	// when 0 (a case mostly waits on its runs). Files run one at a time.
	Parallel int
}

func (o Options) parallel() int {
	if o.Parallel > 0 {
		return o.Parallel
	}
	return 2 * runtime.GOMAXPROCS(0)
}

// Result values of a case.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// CaseResult is one case's outcome.
type CaseResult struct {
	File     string
	Name     string
	Pos      nodes.Pos
	Result   string // Pass, Fail or Skip
	Elapsed  time.Duration
	Failures []Failure
	Reason   string // why it was skipped
	Log      string // the engine's log lines during the case (Options.LogLevel)
}

// FileResult is a test file's outcome. Err is set when the file could not
// run at all (a bad test file, a flow that does not load); its cases then
// have no results.
type FileResult struct {
	Path    string
	Cases   []CaseResult
	Err     error
	Elapsed time.Duration
}

// Failed reports whether the file or one of its cases failed.
func (r FileResult) Failed() bool {
	if r.Err != nil {
		return true
	}
	for _, c := range r.Cases {
		if c.Result == Fail {
			return true
		}
	}
	return false
}

// envMu serializes test files: a file's env is set in the process
// environment (nodes read *_env fields from it) while its cases run.
var envMu sync.Mutex

// RunFile runs the cases of one test file, each on an engine of its own,
// several at once (Options.Parallel); report, when not nil, is called
// with each case's result in the file's order. Test files run one at a
// time: a file's env is set in the process environment meanwhile.
func RunFile(ctx context.Context, path string, opts Options, report func(CaseResult)) (res FileResult) {
	start := time.Now()
	res.Path = path
	defer func() { res.Elapsed = time.Since(start) }()
	f, err := ParseFile(path)
	if err != nil {
		res.Err = err
		return res
	}
	envMu.Lock()
	defer envMu.Unlock()
	defer setEnv(f.Env)()
	fs, err := f.resolve()
	if err != nil {
		res.Err = err
		return res
	}
	skip := ""
	for _, r := range f.Requires {
		if _, err := os.Stat(filepath.Join(f.Dir, r.Path)); err != nil {
			if opts.CI {
				res.Err = fmt.Errorf("%s: requires %s, missing (CI=true): %s", r.Pos, r.Path, r.How)
				return res
			}
			skip = fmt.Sprintf("%s is missing: %s (under CI=true this fails)", r.Path, r.How)
			break
		}
	}
	if skip == "" && fs.needsONNX {
		err := ai.Load(fs.file)
		if _, ok := ai.Dir(fs.file); err == nil && !ok {
			err = errors.New("the OCR models are not found: run ./scripts/models.sh from the Sluice repository, or set SLUICE_ONNX_DIR")
		}
		if err != nil {
			if opts.CI {
				res.Err = fmt.Errorf("%s: %w (CI=true)", fs.file, err)
				return res
			}
			skip = fmt.Sprintf("%v (under CI=true this fails)", err)
		}
	}
	if skip == "" {
		// Every problem of the flow at once, before any case runs.
		if _, err := (flows.Loader{}).Load(fs.file); err != nil {
			res.Err = err
			return res
		}
	}
	var selected []*Case
	for _, tc := range f.Cases {
		if opts.Run == nil || opts.Run.MatchString(tc.Name) {
			selected = append(selected, tc)
		}
	}
	collect := func(cr CaseResult) {
		res.Cases = append(res.Cases, cr)
		if report != nil {
			report(cr)
		}
	}
	if f.Shared && skip == "" && len(selected) > 0 {
		runShared(ctx, f, fs, selected, opts, collect)
		return res
	}
	// Cases run at once (each on its own engine, so they cannot see each
	// other), up to Parallel; they are reported in the file's order.
	out := make([]CaseResult, len(selected))
	done := make([]chan struct{}, len(selected))
	slots := make(chan struct{}, opts.parallel())
	for i, tc := range selected {
		done[i] = make(chan struct{})
		go func() {
			defer close(done[i])
			slots <- struct{}{}
			defer func() { <-slots }()
			cr := CaseResult{File: path, Name: tc.Name, Pos: tc.Pos}
			t0 := time.Now()
			switch {
			case tc.Skip != "":
				cr.Result, cr.Reason = Skip, tc.Skip
			case skip != "":
				cr.Result, cr.Reason = Skip, skip
			default:
				cr.Failures, cr.Log = runCase(ctx, f, fs, tc, opts)
				cr.Result = Pass
				if len(cr.Failures) > 0 {
					cr.Result = Fail
				}
			}
			cr.Elapsed = time.Since(t0)
			out[i] = cr
		}()
	}
	for i := range selected {
		<-done[i]
		collect(out[i])
	}
	return res
}

// setEnv sets env in the process environment and returns what restores it.
func setEnv(env map[string]string) func() {
	type old struct {
		v  string
		ok bool
	}
	saved := map[string]old{}
	for k, v := range env {
		ov, ok := os.LookupEnv(k)
		saved[k] = old{ov, ok}
		// Until a case serves its routes: an address nothing listens on.
		os.Setenv(k, strings.ReplaceAll(v, testURL, "http://127.0.0.1:9"))
	}
	return func() {
		for k, o := range saved {
			if o.ok {
				os.Setenv(k, o.v)
			} else {
				os.Unsetenv(k)
			}
		}
	}
}

// flowSet is what a test file tests: a flow file, and the flow's name
// when the file names one flow (else every flow of the file).
type flowSet struct {
	file      string
	data      []byte
	name      string
	needsONNX bool
}

var aiNode = regexp.MustCompile(`(?m)^\s*(?:-\s*)?node:\s*["']?ai\.`)

// resolve finds the flow file: a file name relative to the test file, or
// a flow name among the flow files of the test file's folder.
func (f *File) resolve() (*flowSet, error) {
	ref := f.Flow
	if strings.HasSuffix(ref, ".yaml") || strings.HasSuffix(ref, ".yml") {
		file := filepath.Join(f.Dir, ref)
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, nodes.Problems{{Pos: f.Pos, Msg: fmt.Sprintf("flow: %v", err)}}
		}
		return &flowSet{file: file, data: data, needsONNX: aiNode.Match(data)}, nil
	}
	entries, err := os.ReadDir(f.Dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		p := filepath.Join(f.Dir, e.Name())
		if e.IsDir() || flows.IsTestFile(p) || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		fl, _ := flows.Loader{}.Parse(p, data)
		for _, fw := range fl {
			if fw.Name == ref {
				return &flowSet{file: p, data: data, name: ref, needsONNX: aiNode.Match(data)}, nil
			}
			names = append(names, fw.Name)
		}
	}
	return nil, nodes.Problems{{Pos: f.Pos, Msg: fmt.Sprintf("flow: no flow file or flow named %q in %s%s", ref, f.Dir, nodes.Suggest(ref, names))}}
}

// observer keeps the runs an engine ended, for cases to wait on.
type observer struct {
	mu      sync.Mutex
	ends    []flows.RunEnd
	changed chan struct{} // closed and replaced when ends grows
}

func newObserver() *observer { return &observer{changed: make(chan struct{})} }

func (o *observer) add(e flows.RunEnd) {
	o.mu.Lock()
	o.ends = append(o.ends, e)
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// mark is the number of runs ended so far.
func (o *observer) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.ends)
}

// wait returns the first run ended since from that match accepts.
func (o *observer) wait(ctx context.Context, from int, match func(flows.RunEnd) bool) (*flows.RunEnd, error) {
	for {
		o.mu.Lock()
		for i := from; i < len(o.ends); i++ {
			if match(o.ends[i]) {
				e := o.ends[i]
				o.mu.Unlock()
				return &e, nil
			}
		}
		from = len(o.ends)
		ch := o.changed
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// last returns the last run ended since from, or nil.
func (o *observer) last(from int) *flows.RunEnd {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.ends) <= from {
		return nil
	}
	e := o.ends[len(o.ends)-1]
	return &e
}

// harness is one case's engine and its throwaway services.
type harness struct {
	dir    string
	store  *storage.Store
	broker *recorder
	state  *state.DB
	engine *flows.Engine
	flows  []*flows.Flow
	obs    *observer
	stop   func() error
	// srv serves the engine's routes on loopback when the test file's env
	// refers to ${SLUICE_TEST_URL} (an http.call of one flow reaching
	// another flow's route).
	srv     *http.Server
	handler atomic.Pointer[http.Handler]
}

// urlMu serializes the cases that serve their routes, from setting
// their address in the environment until their flows are parsed.
var urlMu sync.Mutex

// testURL is replaced in a test file's env values by the address the
// case's routes are served at.
const testURL = "${SLUICE_TEST_URL}"

func usesTestURL(env map[string]string) bool {
	for _, v := range env {
		if strings.Contains(v, testURL) {
			return true
		}
	}
	return false
}

// serve starts the loopback listener when env refers to testURL, and
// sets the env values that do with its address.
func (h *harness) serve(env map[string]string) error {
	if !usesTestURL(env) {
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := h.handler.Load(); p != nil {
			(*p).ServeHTTP(w, r)
			return
		}
		http.Error(w, "starting", http.StatusServiceUnavailable)
	})}
	go func() { _ = h.srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	for k, v := range env {
		if strings.Contains(v, testURL) {
			os.Setenv(k, strings.ReplaceAll(v, testURL, base)) // restored by RunFile
		}
	}
	return nil
}

// runCase runs one case on its own engine and returns its failures and
// the engine's log.
func runCase(ctx context.Context, f *File, fs *flowSet, tc *Case, opts Options) (_ []Failure, logText string) {
	ctx, cancel := context.WithTimeout(ctx, tc.Timeout)
	defer cancel()
	var logs syncbuf.Buffer
	log := newLog(&logs, opts)
	defer func() { logText = logs.String() }()
	h, err := start(ctx, f, fs, log)
	if h != nil {
		defer func() {
			if err := h.close(); err != nil {
				log.Warn("closing the case's engine", "error", err)
			}
		}()
	}
	if err != nil {
		return []Failure{{Pos: tc.Pos, Msg: err.Error()}}, ""
	}
	return h.run(ctx, tc), ""
}

// runShared runs the cases one after another on one engine (a test
// file's shared: true) and reports each as it ends.
func runShared(ctx context.Context, f *File, fs *flowSet, cases []*Case, opts Options, report func(CaseResult)) {
	var logs syncbuf.Buffer
	log := newLog(&logs, opts)
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	h, err := start(startCtx, f, fs, log)
	cancel()
	if h != nil {
		defer h.close()
	}
	for _, tc := range cases {
		cr := CaseResult{File: f.Path, Name: tc.Name, Pos: tc.Pos}
		t0, from := time.Now(), logs.Len()
		switch {
		case tc.Skip != "":
			cr.Result, cr.Reason = Skip, tc.Skip
		case err != nil:
			cr.Result, cr.Failures = Fail, []Failure{{Pos: f.Pos, Msg: "the shared engine: " + err.Error()}}
		default:
			cctx, cancel := context.WithTimeout(ctx, tc.Timeout)
			cr.Failures = h.run(cctx, tc)
			cancel()
			cr.Result = Pass
			if len(cr.Failures) > 0 {
				cr.Result = Fail
			}
		}
		cr.Elapsed, cr.Log = time.Since(t0), logs.From(from)
		report(cr)
	}
}

// newLog is a case's logger, writing to logs from opts.LogLevel.
func newLog(logs *syncbuf.Buffer, opts Options) *slog.Logger {
	level := opts.LogLevel
	if level == nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
}

// run feeds a case's inputs to the engine and checks its expectations.
func (h *harness) run(ctx context.Context, tc *Case) []Failure {
	target, err := h.target(tc)
	if err != nil {
		return []Failure{{Pos: tc.Pos, Msg: err.Error()}}
	}
	for i, in := range tc.Before {
		if _, _, err := h.feed(ctx, target, in, false); err != nil {
			return []Failure{{Pos: in.Pos, Msg: fmt.Sprintf("before[%d]: %v", i, err)}}
		}
	}
	mark := h.broker.mark()
	end, resp, err := h.feed(ctx, target, tc.Input, true)
	if err != nil {
		return []Failure{{Pos: tc.Input.Pos, Msg: err.Error()}}
	}
	o := &outcome{ctx: ctx, end: end, resp: resp, store: h.store, stateDir: h.dir,
		published: func(topic string) []*message.Message { return h.broker.since(mark, topic) }}
	var out []Failure
	for _, ex := range tc.expect {
		out = append(out, ex.check(o)...)
	}
	// In the file's order, as a reader goes through the case.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	return out
}

// dropTime leaves the time out of captured log lines: they are read
// next to the case they belong to.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// start opens a case's services and runs its engine until it is ready.
func start(ctx context.Context, f *File, fs *flowSet, log *slog.Logger) (h *harness, err error) {
	h = &harness{obs: newObserver()}
	if h.dir, err = os.MkdirTemp(tempBase(), "sluice-test-"); err != nil {
		return nil, err
	}
	if cache := wasmCache(); cache != "" {
		// WebAssembly functions compile once per machine, not per case.
		_ = os.Symlink(cache, filepath.Join(h.dir, "wasm-cache"))
	}
	if h.store, err = storage.Open(ctx, "mem://"); err != nil {
		return h, err
	}
	mem, err := brokers.Open(ctx, "mem://", flows.WatermillLogger(log))
	if err != nil {
		return h, err
	}
	h.broker = newRecorder(mem)
	if h.state, err = openState(h.dir); err != nil {
		return h, err
	}
	// The address is set in the environment until the flows are parsed
	// (their ${NAME} references read it): one case at a time.
	locked := usesTestURL(f.Env)
	if locked {
		urlMu.Lock()
	}
	defer func() {
		if locked {
			urlMu.Unlock()
		}
	}()
	if err := h.serve(f.Env); err != nil {
		return h, err
	}
	publish := func(_ context.Context, topic string, msgs ...*message.Message) error {
		return h.broker.Publisher().Publish(topic, msgs...)
	}
	deps := nodes.Deps{Store: h.store, Logger: log, StateDir: h.dir, Publish: publish}
	all, probs := flows.Loader{Deps: deps}.Parse(fs.file, fs.data)
	if locked {
		urlMu.Unlock()
		locked = false
	}
	if err := probs.Err(); err != nil {
		return h, err
	}
	for _, fl := range all {
		if fs.name == "" || fl.Name == fs.name {
			h.flows = append(h.flows, fl)
		}
	}
	h.engine, err = flows.NewEngine(flows.Options{Broker: h.broker, Store: h.store, State: h.state, Logger: log,
		OnRunEnd: h.obs.add, DrainTimeout: 5 * time.Second}, h.flows)
	if err != nil {
		return h, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- h.engine.Run(runCtx) }()
	h.stop = func() error { stop(); return <-done }
	if h.srv != nil {
		handler := h.engine.HTTPHandler()
		h.handler.Store(&handler)
	}
	select {
	case <-h.engine.Ready():
		return h, nil
	case err := <-done:
		h.stop = nil
		if err == nil {
			err = errors.New("the engine stopped before it was ready")
		}
		return h, fmt.Errorf("engine: %w", err)
	case <-ctx.Done():
		return h, fmt.Errorf("engine not ready: %w", ctx.Err())
	}
}

// openState opens a fresh state database in dir: a copy of one created
// (and migrated) once per process, which is cheaper than migrating anew.
func openState(dir string) (*state.DB, error) {
	stateOnce.Do(func() {
		tmp, err := os.MkdirTemp(tempBase(), "sluice-state-")
		if err != nil {
			stateErr = err
			return
		}
		defer os.RemoveAll(tmp)
		path := filepath.Join(tmp, "state.db")
		st, err := state.Open(path)
		if err != nil {
			stateErr = err
			return
		}
		if stateErr = st.Close(); stateErr != nil {
			return
		}
		stateFiles = map[string][]byte{}
		for _, name := range []string{"state.db", "state.db.sluice-id"} {
			if stateFiles[name], stateErr = os.ReadFile(filepath.Join(tmp, name)); stateErr != nil {
				return
			}
		}
	})
	if stateErr != nil {
		return nil, stateErr
	}
	for name, data := range stateFiles {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return state.Open(filepath.Join(dir, "state.db"))
}

var (
	stateOnce  sync.Once
	stateFiles map[string][]byte // name → content of a fresh state database
	stateErr   error
)

// wasmCache is the compilation cache of WebAssembly functions the cases
// share (the function node keeps it in its home's wasm-cache, which is
// each case's folder): in the user's cache folder, as Go's build cache
// is, so a module compiles once, not once per case and run; "" when
// there is no such folder.
func wasmCache() string {
	wasmOnce.Do(func() {
		dir, err := os.UserCacheDir()
		if err != nil {
			return
		}
		dir = filepath.Join(dir, "sluice", "wasm-cache")
		if os.MkdirAll(dir, 0o700) == nil {
			wasmDir = dir
		}
	})
	return wasmDir
}

var (
	wasmOnce sync.Once
	wasmDir  string
)

// tempBase is where cases keep their state: /dev/shm when it is there
// (memory: SQLite's syncs cost nothing, and a case's databases are thrown
// away anyway), else the system's temporary folder.
func tempBase() string {
	tempOnce.Do(func() {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			if d, err := os.MkdirTemp("/dev/shm", "sluice-probe-"); err == nil {
				os.Remove(d)
				tempDir = "/dev/shm"
			}
		}
	})
	return tempDir
}

var (
	tempOnce sync.Once
	tempDir  string // "": os.TempDir()
)

func (h *harness) close() error {
	var errs []error
	if h.srv != nil {
		errs = append(errs, h.srv.Close())
	}
	if h.stop != nil {
		errs = append(errs, h.stop())
	}
	if h.state != nil {
		errs = append(errs, h.state.Close())
	}
	if h.broker != nil {
		errs = append(errs, h.broker.Close())
	}
	if h.store != nil {
		errs = append(errs, h.store.Close())
	}
	errs = append(errs, os.RemoveAll(h.dir))
	return errors.Join(errs...)
}

// target is the flow a case drives: its flow:, or the only flow.
func (h *harness) target(tc *Case) (*flows.Flow, error) {
	var names []string
	for _, fl := range h.flows {
		if tc.Flow == "" && len(h.flows) == 1 || fl.Name == tc.Flow {
			return fl, nil
		}
		names = append(names, fl.Name)
	}
	if tc.Flow == "" {
		if tc.Input != nil && tc.Input.Request != nil {
			return nil, nil // the route decides
		}
		return nil, fmt.Errorf("the flow file has %d flows (%s): name the case's flow", len(h.flows), strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("flow: no flow %q among %s%s", tc.Flow, strings.Join(names, ", "), nodes.Suggest(tc.Flow, names))
}

// feed hands an input to the engine and waits for the run it starts to
// end; a request that was refused before it ran has no run. Messages to
// a batch flow (one ending in archive) have no run of their own: those
// of before are only published, and the case's input waits for the
// flow's next run, the batch's (or one message's dead letter).
func (h *harness) feed(ctx context.Context, target *flows.Flow, in *Input, last bool) (*flows.RunEnd, *response, error) {
	from := h.obs.mark()
	batch := target != nil && isBatch(target)
	wait := func(what string, match func(flows.RunEnd) bool) (*flows.RunEnd, error) {
		e, err := h.obs.wait(ctx, from, match)
		if err != nil {
			return nil, fmt.Errorf("%s: no run ended: %w", what, err)
		}
		return e, nil
	}
	switch {
	case in.Message != nil:
		m := in.Message
		topic := m.Topic
		if topic == "" {
			if target == nil || target.Trigger.Kind != flows.TriggerTopic && target.Trigger.Kind != flows.TriggerSchedule {
				return nil, nil, errors.New("message: give its topic (the flow has no topic trigger)")
			}
			topic = target.InputTopic()
		}
		msg := message.NewMessage(watermill.NewUUID(), m.Payload)
		for k, v := range m.Meta {
			msg.Metadata.Set(k, v)
		}
		if m.Key != "" {
			msg.Metadata.Set(brokers.MetaPartitionKey, m.Key)
		}
		if err := h.broker.Publisher().Publish(topic, msg); err != nil {
			return nil, nil, fmt.Errorf("message: publish to %s: %w", topic, err)
		}
		if batch && topic == target.InputTopic() {
			if !last {
				return nil, nil, nil
			}
			e, err := wait("message to "+topic, func(e flows.RunEnd) bool { return e.Run.Flow == target.Name })
			return e, nil, err
		}
		e, err := wait("message to "+topic, func(e flows.RunEnd) bool { return e.Run.Input == msg.UUID })
		return e, nil, err
	case in.Object != nil:
		o := in.Object
		bucket := o.Bucket
		if bucket == "" {
			if target == nil || target.Trigger.Kind != flows.TriggerBucket {
				return nil, nil, errors.New("object: give its bucket (the flow has no bucket trigger)")
			}
			bucket = target.Trigger.Bucket.Bucket
		}
		info, err := h.store.PutBytes(ctx, bucket, o.Key, o.Data, storage.PutOptions{ContentType: o.ContentType})
		if err != nil {
			return nil, nil, fmt.Errorf("object: put %s/%s: %w", bucket, o.Key, err)
		}
		input := bucket + "/" + o.Key + "@" + info.ETag
		e, err := wait("object "+bucket+"/"+o.Key, func(e flows.RunEnd) bool {
			return e.Run.Input == input || e.Run.Status == flows.StatusFiltered && target != nil && e.Run.Flow == target.Name
		})
		return e, nil, err
	case in.Request != nil:
		req, err := in.Request.build(ctx)
		if err != nil {
			return nil, nil, err
		}
		rec := httptest.NewRecorder()
		h.engine.HTTPHandler().ServeHTTP(rec, req)
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		resp := &response{status: res.StatusCode, header: res.Header, body: body}
		if e := h.obs.last(from); e != nil {
			return e, resp, nil // a sync run: ended in the request
		}
		id := res.Header.Get("X-Sluice-Run")
		if id == "" || res.StatusCode >= 400 {
			return nil, resp, nil // refused before running
		}
		e, err := wait("request "+in.Request.Path, func(e flows.RunEnd) bool { return e.Run.Input == id || e.Run.ID == id })
		return e, resp, err
	}
	return nil, nil, errors.New("no input")
}

// isBatch reports whether f ends in a batching step (archive).
func isBatch(f *flows.Flow) bool {
	if len(f.Steps) == 0 {
		return false
	}
	_, ok := f.Steps[len(f.Steps)-1].Node.(nodes.Batcher)
	return ok
}

// build makes the request's http.Request.
func (r *RequestInput) build(ctx context.Context) (*http.Request, error) {
	body, ctype := r.Body, ""
	if r.FormFile != "" {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		part, err := w.CreateFormFile(r.FormFile, r.FileName)
		if err != nil {
			return nil, err
		}
		part.Write(r.Body)
		w.Close()
		body, ctype = b.Bytes(), w.FormDataContentType()
	}
	req := httptest.NewRequestWithContext(ctx, r.Method, r.Path, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}
