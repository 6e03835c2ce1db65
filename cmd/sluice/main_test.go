package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes/ai"
)

// sluice runs the CLI in process with a private home folder.
func sluice(t *testing.T, home string, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"--home", home}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestValidateReportsEveryProblemWithExitCode2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("name: bad\non: {topic: in}\nsteps:\n  - node: image.thumbnial\n  - node: publish\n    with: {topic: in}\n"), 0o644))
	_, err := sluice(t, dir, "", "validate", dir)
	var ee exitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.code)
	msg := ee.Error()
	assert.Contains(t, msg, bad+`:4:11: steps[0]: unknown node type "image.thumbnial" (did you mean "image.thumbnail"?)`)
	assert.Contains(t, msg, bad+`:6:19: steps[1] (publish): publishes to the flow's own trigger topic "in", an endless loop`)
	assert.Contains(t, msg, "2 problem(s)")

	out, err := sluice(t, dir, "", "validate", "../../examples")
	if _, lerr := ai.LibraryPath("../../examples/ocr/flow.yaml"); lerr != nil && os.Getenv("CI") != "true" {
		// Without ONNX Runtime the ocr example does not validate, and says
		// how to get it.
		require.Error(t, err)
		assert.Contains(t, err.Error(), "./scripts/models.sh")
		return
	}
	require.NoError(t, err)
	assert.Contains(t, out, "ok: ")
}

func TestNodesAndSchema(t *testing.T) {
	out, err := sluice(t, t.TempDir(), "", "nodes")
	require.NoError(t, err)
	for _, typ := range []string{"image.thumbnail", "publish", "storage.get", "storage.put", "switch", "transform", "log"} {
		assert.Contains(t, out, typ)
	}
	out, err = sluice(t, t.TempDir(), "", "nodes", "image.thumbnail")
	require.NoError(t, err)
	assert.Contains(t, out, "fit|fill|exact")
	assert.Contains(t, out, "default 256")
	_, err = sluice(t, t.TempDir(), "", "nodes", "image.thumbnale")
	assert.ErrorContains(t, err, `did you mean "image.thumbnail"`)

	out, err = sluice(t, t.TempDir(), "", "schema")
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &schema))
	step := schema["$defs"].(map[string]any)["step"].(map[string]any)
	assert.Greater(t, len(step["allOf"].([]any)), 7, "one condition per node type")
}

func TestPublishPutAndRuns(t *testing.T) {
	home := t.TempDir()
	out, err := sluice(t, home, "", "publish", "orders", `{"id":"o-1"}`)
	require.NoError(t, err)
	assert.Len(t, strings.TrimSpace(out), 36, "prints the message id")
	_, err = sluice(t, home, `{"id":"o-2"}`, "publish", "--meta", "source=test", "orders")
	require.NoError(t, err)
	_, err = sluice(t, home, "", "publish", "orders", `{oops`)
	assert.ErrorContains(t, err, "not valid JSON")
	_, err = sluice(t, home, "", "publish", "--meta", "novalue", "orders", `{}`)
	assert.ErrorContains(t, err, "want key=value")

	src := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a", "one.txt"), []byte("1"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "two.txt"), []byte("22"), 0o644))
	out, err = sluice(t, home, "", "put", "--prefix", "batch/", "uploads", src)
	require.NoError(t, err)
	assert.Contains(t, out, "uploads/batch/a/one.txt\t1 bytes")
	assert.FileExists(t, filepath.Join(home, "buckets", "uploads", "batch", "two.txt"))
	_, err = sluice(t, home, "", "put", "--key", "x", "uploads", src)
	assert.ErrorContains(t, err, "--key names one object")
	_, err = sluice(t, home, "", "put", "uploads", filepath.Join(src, "missing"))
	assert.Error(t, err)

	out, err = sluice(t, home, "", "runs")
	require.NoError(t, err)
	assert.Equal(t, "no runs\n", out)
	_, err = sluice(t, home, "", "runs", "--status", "weird")
	assert.ErrorContains(t, err, "--status must be")
}

func TestStateOnAFreshHomeCreatesNothing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	_, err := sluice(t, home, "", "state", "get", "order", "o-1")
	require.ErrorContains(t, err, "no machine state at "+filepath.Join(home, "machines.db"))
	_, err = os.Stat(home)
	assert.True(t, os.IsNotExist(err), "reading state must not create the home")
}
