package examples_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSluiceTestExamples runs `sluice test examples` from the repository
// root, as a user (and scripts/test.sh) does: every example's *_test.yaml
// passes. The Go function of the functions example is built first (as
// its README says); the OCR cases are skipped without ONNX Runtime unless
// CI=true, which the environment passes through.
func TestSluiceTestExamples(t *testing.T) {
	goBuild(t, filepath.Join("functions", "upper.wasm"), "./functions/upper", []string{"GOOS=wasip1", "GOARCH=wasm"}, "-buildmode=c-shared")
	cmd := exec.Command(sluiceBin, "test", "-v", "examples")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sluice test examples:\n%s", out)
	for _, f := range []string{"api/flows_test.yaml", "functions/invoices_test.yaml", "functions/quote_test.yaml",
		"functions/webhook_test.yaml", "functions/words_test.yaml", "log-archive/flow_test.yaml",
		"ocr/flow_test.yaml", "orders/flow_test.yaml", "thumbnails/flow_test.yaml"} {
		assert.Contains(t, string(out), "ok  \texamples/"+f+"\t", "%s", out)
	}
	assert.NotContains(t, string(out), "--- FAIL")
	assert.Contains(t, string(out), "--- PASS: examples/orders/flow_test.yaml/shipping-an-unpaid-order-is-dead-lettered (")
}

// TestSluiceTestFailures: a changed behaviour fails its case with the test
// file's line:col, the exit code is 1 (2 for an invalid test file), and
// --json prints one event per line.
func TestSluiceTestFailures(t *testing.T) {
	dir := copyExample(t, "orders")
	test := filepath.Join(dir, "flow_test.yaml")
	b, err := os.ReadFile(test)
	require.NoError(t, err)
	// Large payments now start at 100: the review expectation breaks.
	require.NoError(t, os.WriteFile(test, []byte(strings.Replace(string(b), `REVIEW_OVER: "1000"`, `REVIEW_OVER: "10"`, 1)), 0o644))

	cmd := exec.Command(sluiceBin, "test", dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v\n%s", err, out)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, string(out), "--- FAIL: "+test+"/pay-fans-out-to-billing-and-warehouse (")
	assert.Contains(t, string(out), test+":23:15: published review: got 1 messages")
	assert.Contains(t, string(out), "FAIL\t"+test+"\t")
	assert.NotContains(t, string(out), "--- PASS", "passes print with -v only")

	cmd = exec.Command(sluiceBin, "test", "--json", "--run", "^create$", dir)
	out, err = cmd.Output()
	require.NoError(t, err, "%s", out)
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev struct{ Action, Package, Test string }
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		assert.Equal(t, test, ev.Package)
		actions = append(actions, ev.Action+":"+ev.Test)
	}
	assert.Equal(t, []string{"run:create", "output:create", "pass:create", "output:", "pass:"}, actions)

	require.NoError(t, os.WriteFile(test, []byte("flow: flow.yaml\ncases:\n  - name: x\n    mesage: {}\n"), 0o644))
	out, err = exec.Command(sluiceBin, "test", dir).CombinedOutput()
	require.True(t, errors.As(err, &ee), "%v\n%s", err, out)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, string(out), test+`:4:5: cases[0]: unknown field "mesage" (did you mean "message"?)`)
	assert.Contains(t, string(out), "FAIL\t"+test+" [setup failed]")
}
