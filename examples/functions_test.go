package examples_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// copyExample copies examples/<name> (top-level files) into a new folder.
func copyExample(t *testing.T, name string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(name)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(name, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

// goBuild builds a package of this module with extra environment.
func goBuild(t *testing.T, out, pkg string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append(append([]string{"build"}, args...), "-o", out, pkg)...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s:\n%s", pkg, b)
}

// runsOf returns a flow's runs, decoded, once there are n of them.
func runsOf(t *testing.T, in *instance, flow string, n int) []map[string]any {
	t.Helper()
	var runs []map[string]any
	require.Eventually(t, func() bool {
		runs = nil
		for _, line := range strings.Split(strings.TrimSpace(cli(t, in.dir, "runs", "--flow", flow, "--json", "--limit", "1000")), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil {
				runs = append(runs, r)
			}
		}
		return len(runs) >= n
	}, 60*time.Second, 100*time.Millisecond, "runs of %s:\n%s", flow, in.log)
	return runs
}

// TestFunctions follows examples/functions/README.md: a Python function on
// uploaded invoices writing rows, a signed webhook received by Sluice
// itself, a Node function answering HTTP requests, and a Go function
// compiled to WebAssembly in a topic flow.
func TestFunctions(t *testing.T) {
	flows := copyExample(t, "functions")
	goBuild(t, filepath.Join(flows, "upper.wasm"), "./functions/upper", []string{"GOOS=wasip1", "GOARCH=wasm"}, "-buildmode=c-shared")
	dir := t.TempDir()
	in := &instance{t: t, dir: dir, addr: freeAddr(t)}
	t.Setenv("HOOK_SECRET", "webhook-secret")
	t.Setenv("HOOK_URL", "http://"+in.addr+"/webhooks/invoices")
	startAt(t, in, flows)
	base := "http://" + in.addr

	// Invoices: two good ones, one that does not add up, one without a total.
	invoices := map[string]string{
		"inv-001.txt": "ACME Supplies\nInvoice No: INV-001\nDate: 2026-11-02\nBill to: Globex\n\n3 x Widget @ 4.50\n1 x Gizmo @ 99.00\n\nTotal: 112.50 EUR\n",
		"inv-002.txt": "Invoice #: INV-002\nCustomer: Initech\nCurrency: USD\n10 x Stapler @ 7.25\nTOTAL: 72.50\n",
		"wrong.txt":   "Invoice: INV-003\n2 x Widget @ 4.50\nTotal: 10.00\n",
		"nototal.txt": "Invoice: INV-004\n2 x Widget @ 4.50\n",
	}
	for name, text := range invoices {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
		cli(t, dir, "put", "invoices", name)
	}
	runs := runsOf(t, in, "invoices", 4)
	for _, r := range runs {
		key := strings.TrimPrefix(strings.SplitN(r["input"].(string), "@", 2)[0], "invoices/")
		switch key {
		case "wrong.txt":
			assert.Equal(t, "dead_lettered", r["status"])
			assert.Contains(t, r["error"], "wrong.txt: lines add up to 9.00, total says 10.00")
			assert.EqualValues(t, 1, r["attempts"], "permanent: not retried")
		case "nototal.txt":
			assert.Equal(t, "dead_lettered", r["status"])
			assert.Contains(t, r["error"], "nototal.txt: no total line")
		default:
			assert.Equal(t, "succeeded", r["status"], "%s: %v", key, r["error"])
		}
	}
	db, err := sql.Open("sqlite3", filepath.Join(dir, ".sluice", "data.db"))
	require.NoError(t, err)
	defer db.Close()
	type row struct {
		Invoice, Customer, Currency string
		Total                       float64
		Lines                       string
	}
	var rows []row
	q, err := db.Query(`SELECT invoice, customer, currency, total, lines FROM invoices ORDER BY invoice`)
	require.NoError(t, err)
	for q.Next() {
		var r row
		require.NoError(t, q.Scan(&r.Invoice, &r.Customer, &r.Currency, &r.Total, &r.Lines))
		rows = append(rows, r)
	}
	require.NoError(t, q.Err())
	require.Len(t, rows, 2)
	assert.Equal(t, row{"INV-001", "Globex", "EUR", 112.5, `[{"amount":13.5,"item":"Widget","price":4.5,"qty":3},{"amount":99,"item":"Gizmo","price":99,"qty":1}]`}, rows[0])
	assert.Equal(t, row{"INV-002", "Initech", "USD", 72.5, `[{"amount":72.5,"item":"Stapler","price":7.25,"qty":10}]`}, rows[1])

	// The webhook: each recorded invoice was POSTed, signed, to Sluice's own
	// HTTP trigger, which verified the signature and kept it.
	require.Eventually(t, func() bool {
		var n int
		_ = db.QueryRow(`SELECT count(*) FROM hooks`).Scan(&n)
		return n == 2
	}, 30*time.Second, 50*time.Millisecond, "webhooks:\n%s", in.log)
	var key string
	require.NoError(t, db.QueryRow(`SELECT idempotency_key FROM hooks WHERE invoice = 'INV-001'`).Scan(&key))
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-`, key, "a name-based UUID derived from the input")
	// An unsigned (or wrongly signed) call is refused by the receiver.
	resp, err := http.Post(base+"/webhooks/invoices", "application/json", strings.NewReader(`{"invoice":"FAKE","total":1}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// Quote: a Node function behind an HTTP-triggered flow, answered in the
	// request.
	post := func(body string) (int, map[string]any) {
		resp, err := http.Post(base+"/quote", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		require.NoError(t, json.Unmarshal(b, &out), "%s", b)
		return resp.StatusCode, out
	}
	status, out := post(`{"country": "FR", "items": [{"sku": "widget", "qty": 20}, {"sku": "gizmo", "qty": 1}]}`)
	require.Equal(t, 200, status, "%v", out)
	assert.Equal(t, map[string]any{"net": 179.55, "vat": 35.91, "total": 215.46, "discount": 0.05, "subtotal": 189.0, "currency": "EUR"},
		map[string]any{"net": out["net"], "vat": out["vat"], "total": out["total"], "discount": out["discount"], "subtotal": out["subtotal"], "currency": out["currency"]})
	status, out = post(`{"country": "XX", "items": [{"sku": "widget", "qty": 1}]}`)
	assert.Equal(t, 422, status)
	assert.Contains(t, out["error"], `country "XX": we ship to FR, DE, IE, US`)

	// Words: a Go function compiled to WebAssembly in a topic flow.
	cli(t, dir, "publish", "words", `{"text": "hello wasm world"}`)
	cli(t, dir, "publish", "words", `{"nope": 1}`)
	runs = runsOf(t, in, "words", 2)
	statuses := map[string]int{}
	for _, r := range runs {
		statuses[r["status"].(string)]++
		if r["status"] == "dead_lettered" {
			assert.Contains(t, r["error"], `want a payload {"text": "..."}`)
		}
	}
	assert.Equal(t, map[string]int{"succeeded": 1, "dead_lettered": 1}, statuses)
	var text string
	var words int
	require.NoError(t, db.QueryRow(`SELECT text, words FROM words`).Scan(&text, &words))
	assert.Equal(t, "HELLO WASM WORLD", text)
	assert.Equal(t, 3, words)
}

// TestFunctionFailures runs misbehaving functions through the binary, in
// each runtime: output that is not JSON or too large, a crash, a hang past
// the step's timeout, a permanent error and a memory hog. Permanent
// failures are dead-lettered at once; the others after the retries.
func TestFunctionFailures(t *testing.T) {
	flows := t.TempDir()
	testdata, err := filepath.Abs("../nodes/function/testdata")
	require.NoError(t, err)
	goBuild(t, filepath.Join(flows, "misbehave.wasm"), "../nodes/function/testdata/goworker", []string{"GOOS=wasip1", "GOARCH=wasm"}, "-tags", "reactor", "-buildmode=c-shared")
	runtimes := map[string]string{
		"py":   "{runtime: exec, command: [python3, " + filepath.Join(testdata, "handler.py") + "], memory_mb: 200, max_output: 50000}",
		"node": "{runtime: exec, command: [node, " + filepath.Join(testdata, "handler.js") + "], memory_mb: 200, max_output: 50000}",
		"wasm": "{runtime: wasm, module: misbehave.wasm, memory_mb: 64, max_output: 50000}",
	}
	var yaml bytes.Buffer
	for name, with := range runtimes {
		fmt.Fprintf(&yaml, "---\nname: fail-%s\non: {topic: fail.%s}\nretry: {max_attempts: 2, backoff: 10ms}\nsteps:\n  - node: function\n    timeout: 1s\n    with: %s\n", name, name, with)
	}
	require.NoError(t, os.WriteFile(filepath.Join(flows, "fail.yaml"), yaml.Bytes(), 0o644))
	dir := t.TempDir()
	in := run(t, dir, flows)

	cases := map[string]struct {
		want      string
		permanent bool
	}{
		"notjson":   {"is not a JSON object", true},
		"big":       {"larger than max_output (50000 bytes)", true},
		"crash":     {"crashed during the call", false},
		"hang":      {"deadline", false},
		"permanent": {"bad order", true},
		"hog":       {"", false},
		"ok":        {"", false},
	}
	for name := range runtimes {
		for do := range cases {
			if name == "node" && do == "big" || name == "wasm" && do == "notjson" {
				continue // the helper never writes those
			}
			cli(t, dir, "publish", "fail."+name, fmt.Sprintf(`{"do": %q}`, do))
		}
	}
	for name := range runtimes {
		n := len(cases)
		if name != "py" {
			n--
		}
		for _, r := range runsOf(t, in, "fail-"+name, n) {
			if r["status"] == "succeeded" {
				continue
			}
			var do string
			for d, c := range cases {
				if c.want != "" && strings.Contains(fmt.Sprint(r["error"]), c.want) {
					do = d
				}
			}
			assert.Equal(t, "dead_lettered", r["status"], "%s: %v", name, r)
			if do == "" { // the memory hog: a crash or the runtime's own error
				assert.Regexp(t, regexp.MustCompile(`(?i)memory|allocation|crashed`), r["error"], name)
				assert.EqualValues(t, 2, r["attempts"], "%s: transient: retried", name)
				continue
			}
			if do == "crash" && name == "py" {
				// The run record keeps the worker's stderr tail and the
				// metered calls; runs show prints them.
				show := cli(t, dir, "runs", "show", fmt.Sprint(r["id"]))
				assert.Contains(t, show, "call  ", "metered calls shown")
				assert.Contains(t, show, "log of step", "the stderr tail shown:\n%s", show)
			}
			if cases[do].permanent {
				assert.EqualValues(t, 1, r["attempts"], "%s %s: permanent: not retried", name, do)
			} else {
				assert.EqualValues(t, 2, r["attempts"], "%s %s: transient: retried", name, do)
			}
		}
	}
	// Every flow still works after its workers were killed and replaced.
	for name := range runtimes {
		cli(t, dir, "publish", "fail."+name, `{"do": "ok"}`)
	}
	for name := range runtimes {
		n := len(cases) + 1
		if name != "py" {
			n--
		}
		ok := 0
		for _, r := range runsOf(t, in, "fail-"+name, n) {
			if r["status"] == "succeeded" {
				ok++
			}
		}
		assert.Equal(t, 2, ok, name)
	}
}

// TestHTTPCallIdempotencyKeyAcrossRedelivery kills sluice (SIGKILL) while
// an http.call is in flight; after the restart the input is redelivered
// and the service sees the same Idempotency-Key again, so it can tell the
// repeat from a new request.
func TestHTTPCallIdempotencyKeyAcrossRedelivery(t *testing.T) {
	keys := make(chan string, 10)
	release := make(chan struct{})
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys <- r.Header.Get("Idempotency-Key")
		if first.CompareAndSwap(false, true) {
			select { // hold the first call until sluice is killed
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	defer close(release)

	flows := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(flows, "notify.yaml"), []byte(`
name: notify
on: {topic: orders}
steps:
  - node: http.call
    timeout: 60s
    with: {url: "`+srv.URL+`/orders", response: ignore}
`), 0o644))
	dir := t.TempDir()
	in := run(t, dir, flows)
	cli(t, dir, "publish", "orders", `{"id": "o-1"}`)
	var k1 string
	select {
	case k1 = <-keys:
	case <-time.After(30 * time.Second):
		t.Fatalf("no call:\n%s", in.log)
	}
	require.NoError(t, in.cmd.Process.Kill()) // SIGKILL: the call never finished
	_ = in.cmd.Wait()
	startAt(t, in, flows)
	select {
	case k2 := <-keys:
		assert.NotEmpty(t, k1)
		assert.Equal(t, k1, k2, "the redelivered input carries the same key")
	case <-time.After(60 * time.Second):
		t.Fatalf("the input was not redelivered:\n%s", in.log)
	}
	runs := runsOf(t, in, "notify", 1)
	assert.Equal(t, "succeeded", runs[0]["status"])
}
