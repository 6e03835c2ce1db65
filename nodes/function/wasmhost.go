package function

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/nodes"
)

// hostEnv names the environment variable that turns a Sluice process into
// a wasm host: a worker of runtime wasm's isolation: process, started from
// Sluice's own executable. Its value is the host's configuration as JSON.
const hostEnv = "SLUICE_WASM_HOST"

// A process started with hostEnv set serves as a wasm host and exits, in
// whatever binary imports this package (sluice, a test binary): nothing
// in main needs to know.
func init() {
	if spec, ok := os.LookupEnv(hostEnv); ok {
		os.Exit(serveHost(spec, os.Stdin, os.Stdout, os.Stderr))
	}
}

// hostStartTimeout bounds a wasm host's start: the first one compiles the
// module when the cache does not have it (seconds; minutes for a large
// module in a race-detector build).
const hostStartTimeout = 5 * time.Minute

// hostConfig is what a wasm host is told; environment values are not in
// it: the host gets the allowed variables in its own environment.
type hostConfig struct {
	Name        string   `json:"name"`
	Module      string   `json:"module"`
	Env         []string `json:"env,omitempty"`
	Mounts      []mount  `json:"mounts,omitempty"`
	BodyDir     string   `json:"body_dir,omitempty"`
	MemoryPages uint32   `json:"memory_pages"`
	MaxOutput   int      `json:"max_output"`
	CacheDir    string   `json:"cache_dir,omitempty"`
}

// serveHost runs a wasm host: it compiles the module without wazero's
// per-loop close checks (or loads that code from the compilation cache,
// which the pool's first host fills) and answers requests, one JSON line
// each, until stdin closes. Nothing here stops a runaway call but
// cpu_time: the parent kills the process at the deadline. The module's
// stderr is passed through to the host's stderr, which the pool logs.
func serveHost(spec string, in io.Reader, out, errOut io.Writer) int {
	var hc hostConfig
	if err := json.Unmarshal([]byte(spec), &hc); err != nil {
		fmt.Fprintf(errOut, "sluice wasm host: bad %s: %v\n", hostEnv, err)
		return 2
	}
	m := &wasmModule{
		name: hc.Name, path: hc.Module, env: hc.Env, mounts: hc.Mounts, bodyDir: hc.BodyDir,
		minWarm: 1, maxInstances: 1, memoryPages: hc.MemoryPages, maxOutput: hc.MaxOutput,
		cacheDir: hc.CacheDir, stderr: errOut, host: true,
	}
	// A module that spins holds its thread; a second one lets the
	// signal-handling goroutine run, so cpu_time (SIGXCPU) ends the host.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 2))
	onCPULimit(func() {
		fmt.Fprintln(errOut, "sluice wasm host: cpu_time spent (SIGXCPU)")
		os.Exit(3)
	})
	ctx := context.Background()
	if err := m.start(ctx); err != nil {
		fmt.Fprintf(errOut, "sluice wasm host: %v\n", err)
		return 1
	}
	defer m.close()
	r := bufio.NewReaderSize(in, 64<<10)
	var line, answer []byte // reused from request to request
	for {
		var err error
		line, _, err = readLine(r, line[:0], math.MaxInt)
		if len(bytes.TrimSpace(line)) > 0 {
			answer = append(m.hostAnswer(ctx, line, answer[:0]), '\n')
			if _, err := out.Write(answer); err != nil {
				return 0
			}
		}
		if err != nil {
			return 0
		}
	}
}

// hostAnswer appends the answer to one request line to dst. A module's
// response that is a valid JSON object on one line is passed on as it is,
// with the host's fields added at its end (where they win over any the
// module wrote); others are decoded and encoded again, or refused as
// in process.
func (m *wasmModule) hostAnswer(ctx context.Context, line, dst []byte) []byte {
	id, ok := leadingID(line)
	warmup := ok && id == "warmup" && bytes.Contains(line, []byte(`"warmup":true`))
	if !ok {
		var head struct {
			ID     string `json:"id"`
			Warmup bool   `json:"warmup"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return appendJSON(dst, &response{Error: "bad request: " + err.Error(), Permanent: true})
		}
		id, warmup = head.ID, head.Warmup
	}
	if warmup { // the instance is ready: the pool's warm-up needs no call
		return appendJSON(dst, &response{ID: id})
	}
	c := &call{id: id, req: line}
	answer := dst
	err := m.invokeRaw(ctx, c, func(out []byte) error {
		if b, ok := withHostFields(dst, out, id, c.cold); ok {
			answer = b
			return nil
		}
		resp, err := decodeResponse(m.name, out, "")
		if err == nil {
			resp.ID, resp.HostCold = id, c.cold
			answer = appendJSON(dst, resp)
		}
		return err
	})
	if err != nil {
		return appendJSON(dst, &response{
			ID: id, Error: strings.TrimPrefix(err.Error(), "function "+m.name+": "),
			Permanent: errors.Is(err, nodes.ErrPermanent), HostLog: c.stderr, HostCold: c.cold,
		})
	}
	return answer
}

// withHostFields appends out, a module's response, to dst with the host's
// fields added, when out is one line holding a valid JSON object (a
// newline at its end is dropped, as json.Encoder writes one).
func withHostFields(dst, out []byte, id string, cold bool) ([]byte, bool) {
	out = bytes.TrimRight(out, " \t\r\n")
	if len(out) < 2 || out[0] != '{' || out[len(out)-1] != '}' || bytes.IndexByte(out, '\n') >= 0 || !json.Valid(out) {
		return dst, false
	}
	body := bytes.TrimRight(out[:len(out)-1], " \t\r")
	dst = append(dst, body...)
	if len(body) > 1 { // not an empty object
		dst = append(dst, ',')
	}
	quoted, err := json.Marshal(id)
	if err != nil {
		return dst, false
	}
	dst = strconv.AppendBool(append(dst, `"host_log":"","host_cold":`...), cold)
	return append(append(append(dst, `,"id":`...), quoted...), '}'), true
}

// appendJSON appends r encoded (a response always encodes).
func appendJSON(dst []byte, r *response) []byte {
	b, _ := json.Marshal(r)
	return append(dst, b...)
}

// leadingID reads the id of a request Sluice encoded: its first field, a
// plain string. Other lines go through encoding/json.
func leadingID(line []byte) (string, bool) {
	const prefix = `{"id":"`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return "", false
	}
	rest := line[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	return string(rest[:end]), true
}

// wasmHosts is runtime wasm with isolation: process: each instance lives
// in a wasm host process (Sluice's own executable, see serveHost) of an
// exec pool, which kills it at the deadline, recycles it after
// max_requests and bounds its CPU time. At least one host is kept: the
// first, started by Start, compiles the module (or loads it from the
// compilation cache) and fills the cache the next ones load from.
type wasmHosts struct {
	mod      *wasmModule // the configuration
	pool     *execPool
	tmpCache string // a compilation cache for the hosts when there is no Sluice home
}

func (h *wasmHosts) setBodyDir(dir string)          { h.mod.bodyDir = dir }
func (h *wasmHosts) guestBodyPath(id string) string { return h.mod.guestBodyPath(id) }

func (h *wasmHosts) start(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("wasm host: %w", err)
	}
	cache := h.mod.cacheDir
	if cache == "" {
		if cache, err = os.MkdirTemp("", "sluice-wasm-cache-"); err != nil {
			return fmt.Errorf("wasm host: %w", err)
		}
		h.tmpCache = cache
	}
	spec, err := json.Marshal(hostConfig{
		Name: h.mod.name, Module: h.mod.path, Env: h.mod.env, Mounts: h.mod.mounts, BodyDir: h.mod.bodyDir,
		MemoryPages: h.mod.memoryPages, MaxOutput: h.mod.maxOutput, CacheDir: cache,
	})
	if err != nil {
		return err
	}
	h.pool.command = []string{exe}
	h.pool.extraEnv = []string{hostEnv + "=" + string(spec)}
	h.pool.noHelpers = true
	h.pool.direct = true
	h.pool.startWait = hostStartTimeout
	want := max(h.pool.minWarm, 1)
	h.pool.minWarm = 1
	if err := h.pool.start(ctx); err != nil {
		return fmt.Errorf("module %s: %w", h.mod.path, err)
	}
	h.pool.minWarm = want
	return h.pool.warm(ctx, want-1)
}

func (h *wasmHosts) call(ctx context.Context, c *call) (*response, error) {
	resp, err := h.pool.call(ctx, c)
	if resp != nil {
		c.cold = c.cold || resp.HostCold
		if resp.HostLog != "" {
			c.stderr = resp.HostLog
		}
	}
	return resp, err
}

func (h *wasmHosts) close() error {
	err := h.pool.close()
	if h.tmpCache != "" {
		err = errors.Join(err, os.RemoveAll(h.tmpCache))
	}
	return err
}
