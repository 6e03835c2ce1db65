package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/gctune"
	"github.com/sluicehq/sluice/machines"
)

const uiTestFlow = "name: shout\non: {topic: words}\nsteps:\n  - node: transform\n    with: {set: {loud: 'true'}}\n"

func TestRunRefusesAnOpenDashboardOffLoopback(t *testing.T) {
	t.Setenv("SLUICE_ADMIN_TOKEN", "")
	dir := t.TempDir()
	flow := filepath.Join(dir, "flow.yaml")
	require.NoError(t, os.WriteFile(flow, []byte(uiTestFlow), 0o644))
	_, err := sluice(t, dir, "", "run", "--listen", "0.0.0.0:0", flow)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--listen 0.0.0.0:0 is reachable from other machines and serves the dashboard")
	assert.Contains(t, err.Error(), "set SLUICE_ADMIN_TOKEN")

	// An HTTP flow the dashboard would hide is refused.
	t.Setenv("SLUICE_ADMIN_TOKEN", "x")
	hidden := filepath.Join(dir, "hidden.yaml")
	require.NoError(t, os.WriteFile(hidden, []byte("name: hidden\non: {http: {path: /ui/orders}}\nsteps:\n  - node: respond\n    with: {body: payload}\n"), 0o644))
	_, err = sluice(t, dir, "", "run", "--listen", "127.0.0.1:0", hidden)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "its path /ui/orders is under /ui, the dashboard's")
	t.Setenv("SLUICE_ADMIN_TOKEN", "")

	for _, c := range []struct {
		name, addr, token string
		enabled, ok       bool
	}{
		{"loopback without a token", "127.0.0.1:8787", "", true, true},
		{"localhost without a token", "localhost:8787", "", true, true},
		{"all interfaces without a token", ":8787", "", true, false},
		{"all interfaces with a token", "0.0.0.0:8787", "t0k", true, true},
		{"all interfaces, dashboard off", "0.0.0.0:8787", "", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := uiOptions{enabled: c.enabled, token: c.token}
			assert.Equal(t, c.ok, u.checkAdminToken(c.addr) == nil)
		})
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// runInProcess runs `sluice run` with args on uiTestFlow in process until
// the test ends, and waits until it is ready on readyAddr.
func runInProcess(t *testing.T, readyAddr string, args ...string) {
	runFlowInProcess(t, uiTestFlow, readyAddr, args...)
}

// runFlowInProcess is runInProcess on a flow file holding yaml; it
// returns the file's path.
func runFlowInProcess(t *testing.T, yaml, readyAddr string, args ...string) string {
	dir := t.TempDir()
	flow := filepath.Join(dir, "flow.yaml")
	require.NoError(t, os.WriteFile(flow, []byte(yaml), 0o644))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(append([]string{"--home", dir, "run"}, args...), flow))
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("sluice run did not stop")
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + readyAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond)
	return flow
}

// lazyGet formats as get(path)'s body, read when printed.
type lazyGet func(string) (int, string)

func (l lazyGet) path(p string) fmt.Stringer { return lazyBody{l, p} }

type lazyBody struct {
	get  lazyGet
	path string
}

func (b lazyBody) String() string { code, body := b.get(b.path); return fmt.Sprint(code, " ", body) }

// TestReloadedFlowsMeetTheDashboard: with the dashboard on the flows'
// listener, a flow added at / by a reload serves / (the redirect to /ui/
// steps aside, and comes back when the flow goes), and a reloaded flow
// under /ui is refused like one at start: the running flows are kept and
// /readyz names the problem.
func TestReloadedFlowsMeetTheDashboard(t *testing.T) {
	t.Setenv("SLUICE_ADMIN_TOKEN", "cli-test-token")
	addr := freeAddr(t)
	flow := runFlowInProcess(t, uiTestFlow, addr, "--listen", addr, "--watch")
	get := func(path string) (int, string) {
		resp, err := noRedirect.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := get("/")
	require.Equal(t, http.StatusFound, code, "no flow at /: the dashboard's redirect")

	root := "name: home\non: {http: {path: /, methods: [GET]}}\nsteps:\n  - node: transform\n    with: {set: {greeting: '\"hello from a flow\"'}}\n  - node: respond\n    with: {body: payload}\n"
	require.NoError(t, os.WriteFile(flow, []byte(root), 0o644))
	require.Eventually(t, func() bool {
		code, body := get("/")
		return code == http.StatusOK && strings.Contains(body, "hello from a flow")
	}, 30*time.Second, 50*time.Millisecond, "the reloaded flow serves /: %s", lazyGet(get).path("/readyz"))

	hidden := "name: hidden\non: {http: {path: /ui/orders}}\nsteps:\n  - node: respond\n    with: {body: payload}\n"
	require.NoError(t, os.WriteFile(flow, []byte(hidden), 0o644))
	require.Eventually(t, func() bool {
		_, body := get("/readyz")
		return strings.Contains(body, "its path /ui/orders is under /ui")
	}, 30*time.Second, 50*time.Millisecond, "the reload is refused, on /readyz")
	code, body := get("/")
	assert.Equal(t, http.StatusOK, code, "the running flows are kept")
	assert.Contains(t, body, "hello from a flow")

	require.NoError(t, os.WriteFile(flow, []byte(uiTestFlow), 0o644))
	require.Eventually(t, func() bool {
		code, _ := get("/")
		return code == http.StatusFound
	}, 30*time.Second, 50*time.Millisecond, "the flow at / removed: the redirect again")
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestRunServesTheDashboard runs `sluice run` in process: / leads to the
// dashboard, which wants the admin token from SLUICE_ADMIN_TOKEN.
func TestRunServesTheDashboard(t *testing.T) {
	t.Setenv("SLUICE_ADMIN_TOKEN", "cli-test-token")
	addr := freeAddr(t)
	runInProcess(t, addr, "--listen", addr)

	get := func(path, token string) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, _ := get("/", "")
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Equal(t, "/ui/", resp.Header.Get("Location"))
	resp, _ = get("/ui/", "")
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, _ = get("/ui/api/flows", "")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, body := get("/ui/", "cli-test-token")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `href="/ui/flows/shout"`)
	resp, _ = get("/healthz", "")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the ops endpoints stay open")
}

// TestRunServesTheDashboardOnItsOwnListener: with --ui-listen the
// dashboard is served there alone, on another origin than the flows'.
func TestRunServesTheDashboardOnItsOwnListener(t *testing.T) {
	t.Setenv("SLUICE_ADMIN_TOKEN", "cli-test-token")
	addr, uiAddr := freeAddr(t), freeAddr(t)
	runInProcess(t, addr, "--listen", addr, "--ui-listen", uiAddr)
	get := func(url string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer cli-test-token")
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, get("http://"+uiAddr+"/ui/"))
	assert.Equal(t, http.StatusFound, get("http://"+uiAddr+"/"))
	assert.Equal(t, http.StatusNotFound, get("http://"+addr+"/ui/"), "not on the flows' listener")
	assert.Equal(t, http.StatusNotFound, get("http://"+uiAddr+"/metrics"), "the dashboard's listener serves the dashboard only")

	t.Setenv("SLUICE_ADMIN_TOKEN", "")
	for _, c := range []struct {
		name, listen, uiListen string
		ok                     bool
	}{
		{"dashboard on loopback, flows everywhere", "0.0.0.0:8787", "127.0.0.1:8788", true},
		{"dashboard everywhere", "127.0.0.1:8787", "0.0.0.0:8788", false},
	} {
		u := uiOptions{enabled: true, listen: c.uiListen}
		assert.Equal(t, c.ok, u.checkAdminToken(c.listen) == nil, c.name)
	}
}

// TestDashboardSharesOneMachineStore: the machines page's requests share
// one store (one connection pool), opened at the first, closed at the end.
func TestDashboardSharesOneMachineStore(t *testing.T) {
	var m sharedMachines
	opened := 0
	get := m.get(func(context.Context) (machines.Store, error) {
		opened++
		return machines.OpenSQLite(filepath.Join(t.TempDir(), "machines.db"))
	})
	for range 3 {
		st, err := get(t.Context())
		require.NoError(t, err)
		_, err = st.List(t.Context(), "order", "", 10)
		require.NoError(t, err)
		require.NoError(t, st.Close())
	}
	assert.Equal(t, 1, opened)
	require.NoError(t, m.close())
	st, err := get(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 2, opened, "opened again after close")
	require.NoError(t, st.Close())
	require.NoError(t, m.close())
}

// TestRunPacesTheGarbageCollector: sluice run applies --gc-target (the
// GC percent rises above Go's default while the heap is small, as
// /metrics shows) and refuses a size it cannot read.
func TestRunPacesTheGarbageCollector(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set: sluice run leaves the pace alone")
	}
	_, err := sluice(t, t.TempDir(), "", "run", "--gc-target", "lots", "flow.yaml")
	require.ErrorContains(t, err, `--gc-target "lots": want a size such as 256MiB`)

	t.Cleanup(func() { gctune.Start(0) })
	addr := freeAddr(t)
	runInProcess(t, addr, "--listen", addr, "--gc-target", "300MiB")
	percent := regexp.MustCompile(`(?m)^go_gc_gogc_percent (\d+)$`)
	require.Eventually(t, func() bool {
		runtime.GC() // the pace is set after each collection
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := percent.FindSubmatch(b)
		return m != nil && string(m[1]) != "100"
	}, 30*time.Second, 20*time.Millisecond, "go_gc_gogc_percent stays 100")
}
