package examples_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An input that is in flight each time the process dies is dead-lettered
// on the next start without running again, instead of killing the process
// forever. Here the "crash" is a SIGKILL while the input's run is busy
// enlarging an image far beyond its size; --max-crashes 2 (by the
// environment) makes it two deaths instead of three.
func TestInputThatKeepsKillingTheProcessIsDeadLettered(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SLUICE_MAX_CRASHES", "2")
	flow := writeFlow(t, dir, "poison.yaml", `
name: poison
on: {topic: jobs}
timeout: 10m
steps:
  - node: image.resize
    with: {width: 16000, height: 12000}
`)
	in := run(t, dir, flow)
	var jpg bytes.Buffer
	photoBytes(t, &jpg, 1600, 1200)
	img := filepath.Join(dir, "in.jpg")
	require.NoError(t, os.WriteFile(img, jpg.Bytes(), 0o644))
	cli(t, dir, "publish", "--raw", "jobs", "@"+img)
	slots := filepath.Join(dir, ".sluice", "inflight.slots")
	inFlight := func() bool {
		b, err := os.ReadFile(slots)
		return err == nil && bytes.Contains(b, []byte("poison"))
	}
	for crash := 1; crash <= 2; crash++ {
		require.Eventually(t, inFlight, 20*time.Second, 10*time.Millisecond, "crash %d: the input is in flight:\n%s", crash, in.log)
		require.NoError(t, in.cmd.Process.Kill())
		_ = in.cmd.Wait()
		in = run(t, dir, flow)
	}
	require.Eventually(t, func() bool {
		return strings.Contains(cli(t, dir, "dlq", "list", "--flow", "poison"), "each time the process died: 2 times")
	}, 20*time.Second, 50*time.Millisecond, "the input is dead-lettered:\n%s", in.log)
}
