package web_test

import (
	"github.com/sluicehq/sluice/internal/syncbuf"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDashboardInABrowser builds the real sluice binary, runs the two test
// flows with an admin token, seeds a failing run and a machine entity, and
// runs web/e2e/dashboard.test.mjs (node --test): Chromium through
// playwright-core logs in, loads each page, watches counts move while
// messages flow, sees the failing run, fixes its cause and replays its
// dead letter to a succeeding run. Screenshots of each page go to
// $SLUICE_SCREENSHOTS (web/e2e/out by default, which git ignores);
// with SLUICE_DOCS_SCREENSHOT=1 the flow page is also saved as
// docs/img/dashboard.png.
//
// It needs SLUICE_CHROMIUM and SLUICE_PLAYWRIGHT, which
// scripts/services/chromium.sh prints; with CI=true their absence fails.
func TestDashboardInABrowser(t *testing.T) {
	chromium, playwright := os.Getenv("SLUICE_CHROMIUM"), os.Getenv("SLUICE_PLAYWRIGHT")
	node, nodeErr := exec.LookPath("node")
	if chromium == "" || playwright == "" || nodeErr != nil {
		msg := "browser test: needs node and eval \"$(scripts/services/chromium.sh start)\" (SLUICE_CHROMIUM, SLUICE_PLAYWRIGHT)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", bin, "../cmd/sluice")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	home := filepath.Join(dir, "home")
	flowsDir := filepath.Join(dir, "flows")
	require.NoError(t, os.MkdirAll(flowsDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flowsDir, "enrich.yaml"), []byte(enrichFlow), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(flowsDir, "lifecycle.yaml"), []byte(orderFlow), 0o644))
	// initech has its file; acme's is missing until the browser test adds it.
	writeFile(t, filepath.Join(home, "buckets", "configs", "customers", "initech.json"), `{"tier":"silver"}`)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	const adminToken = "e2e-admin-token"
	var logs syncbuf.Buffer
	run := exec.Command(bin, "--home", home, "run", "--listen", addr, flowsDir)
	run.Env = append(os.Environ(), "SLUICE_ADMIN_TOKEN="+adminToken, "SLUICE_BROKER=", "SLUICE_STORAGE=", "SLUICE_STATE=")
	run.Stdout, run.Stderr = &logs, &logs
	require.NoError(t, run.Start())
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	t.Cleanup(func() {
		_ = run.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = run.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sluice run output:\n%s", logs.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "sluice run not ready:\n%s", &logs)

	sluice := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--home", home}, args...)...)
		cmd.Env = run.Env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "sluice %s: %s", strings.Join(args, " "), out)
	}
	sluice("publish", "orders", `{"customer":"initech","amount":20}`)
	sluice("publish", "orders", `{"customer":"acme","amount":250}`)
	sluice("publish", "order-events", `{"order_id":"o-1","type":"create"}`)
	sluice("publish", "order-events", `{"order_id":"o-1","type":"pay"}`)

	shots := os.Getenv("SLUICE_SCREENSHOTS")
	if shots == "" {
		shots, err = filepath.Abs("e2e/out")
		require.NoError(t, err)
	}
	for _, name := range screenshots { // none left from an earlier run
		require.NoError(t, os.RemoveAll(filepath.Join(shots, name+".png")))
	}
	docs := ""
	if os.Getenv("SLUICE_DOCS_SCREENSHOT") == "1" {
		docs, err = filepath.Abs("../docs/img/dashboard.png")
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(docs), 0o755))
	}
	test := exec.Command(node, "--test", "--test-reporter=spec", "e2e/dashboard.test.mjs")
	test.Env = append(os.Environ(), "SLUICE_URL=http://"+addr, "SLUICE_TOKEN="+adminToken, "SLUICE_BIN="+bin,
		"SLUICE_HOME_DIR="+home, "SLUICE_SCREENSHOTS="+shots, "SLUICE_CHROMIUM="+chromium, "SLUICE_PLAYWRIGHT="+playwright,
		"SLUICE_DOCS_SCREENSHOT="+docs, "SLUICE_BROKER=", "SLUICE_STORAGE=", "SLUICE_STATE=")
	out, err = test.CombinedOutput()
	t.Logf("node --test e2e/dashboard.test.mjs:\n%s", out)
	require.NoError(t, err, "the browser test failed")
	t.Logf("screenshots in %s", shots)
	for _, name := range screenshots {
		info, err := os.Stat(filepath.Join(shots, name+".png"))
		if assert.NoError(t, err, name) {
			assert.Greater(t, info.Size(), int64(1000), name)
		}
	}
}

// screenshots are the pages dashboard.test.mjs saves.
var screenshots = []string{"login", "flows", "flow", "runs", "run-failed", "dead-letters", "replay", "dead-letter", "run-replayed",
	"usage", "machines", "phone-flows", "phone-flow"}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}
