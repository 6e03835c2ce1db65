package examples_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/hostile"
)

// maxRSS is issue #13's goal: peak RSS under 1 GB for any single hostile
// input at the defaults.
const maxRSS = 1_000_000_000

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for process %d", pid)
	return 0
}

// runsByInput returns the runs of flow by input, once there are want of
// them.
func runsByInput(t *testing.T, in *instance, flow string, want int) map[string]map[string]any {
	t.Helper()
	byInput := map[string]map[string]any{}
	for _, r := range runsOf(t, in, flow, want) {
		byInput[r["input"].(string)] = r
	}
	return byInput
}

// alive checks the engine still runs and answers.
func alive(t *testing.T, in *instance) {
	t.Helper()
	require.NoError(t, syscall.Kill(in.cmd.Process.Pid, 0), "the engine process is gone:\n%s", in.log)
	resp, err := http.Get("http://" + in.addr + "/readyz")
	require.NoError(t, err, "the engine does not answer:\n%s", in.log)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// The hostile files of issue #13, dropped into the thumbnails example's
// bucket at the defaults, are dead-lettered with the reason, and the
// engine's peak RSS stays under 1 GB: a deflate TIFF declaring 10000×10000
// 16-bit RGBA pixels (2.85 GB before), a 16-bit 100 MP PNG (0.82 GB), a
// progressive 100 MP JPEG with junk bytes (1.49 GB) and a 250 MB file that
// is no image (0.77 GB, read whole before the 64 MiB refusal).
func TestHostileImagesMemoryBounded(t *testing.T) {
	dir := t.TempDir()
	flow, err := filepath.Abs("thumbnails")
	require.NoError(t, err)
	in := run(t, dir, flow)
	uploads := filepath.Join(dir, ".sluice", "buckets", "uploads")

	hostileFiles := map[string][]byte{
		"bomb.tif":        hostile.TIFF(10000, 10000),
		"bomb16.png":      hostile.PNG16(10000, 10000),
		"progressive.jpg": hostile.ProgressiveJPEG(10000, 10000),
	}
	reasons := map[string]string{
		"bomb.tif":        "tiff of 10000×10000 pixels needs about",
		"bomb16.png":      "png of 10000×10000 pixels needs about",
		"progressive.jpg": "jpeg of 10000×10000 pixels needs about",
		"big.png":         "refused before reading it whole",
	}
	for name, b := range hostileFiles {
		require.NoError(t, os.WriteFile(filepath.Join(uploads, name+".part"), b, 0o644))
		require.NoError(t, os.Rename(filepath.Join(uploads, name+".part"), filepath.Join(uploads, name)))
	}
	// 250 MB of zeros, sparse: no image, and nothing to read whole.
	f, err := os.Create(filepath.Join(dir, "big.png"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(250<<20))
	require.NoError(t, f.Close())
	require.NoError(t, os.Rename(filepath.Join(dir, "big.png"), filepath.Join(uploads, "big.png")))
	// An ordinary image still gets its thumbnail.
	photo(t, filepath.Join(dir, "ok.jpg"), 640, 480)
	cli(t, dir, "put", "uploads", "ok.jpg")

	runs := runsByInput(t, in, "thumbnails", len(reasons)+1)
	for input, r := range runs {
		key := strings.TrimPrefix(strings.SplitN(input, "@", 2)[0], "uploads/")
		if key == "ok.jpg" {
			assert.Equal(t, "succeeded", r["status"], "%v", r["error"])
			continue
		}
		assert.Equal(t, "dead_lettered", r["status"], key)
		assert.Contains(t, r["error"], "uploads/"+key, "the reason names the file")
		assert.Contains(t, r["error"], reasons[key], key)
		t.Logf("%s: %s", key, r["error"])
	}
	alive(t, in)
	peak := peakRSS(t, in.cmd.Process.Pid)
	t.Logf("engine peak RSS: %d MiB", peak>>20)
	assert.Less(t, peak, int64(maxRSS), "peak RSS")
}

// bombFlow evaluates the expressions of issue #13 that took the engine
// down or past its deadline.
const bombFlow = `
name: bombs
on: {topic: bombs}
retry: {max_attempts: 1}
steps:
  - node: transform
    with:
      set:
        n: len(repeat(payload.s, 999999))
---
name: slow
on: {topic: slow}
timeout: 500ms
retry: {max_attempts: 1}
steps:
  - node: transform
    with:
      set:
        n: "reduce(payload.items, #acc + count(payload.items, # < 4500), 0)"
`

// A repeat() that would allocate 20 GB is dead-lettered with the reason,
// the engine stays up with its memory bounded; an expression over 9,000
// elements stops at the run's 500 ms timeout instead of succeeding
// seconds later.
func TestExpressionBombs(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flows.yaml"), []byte(bombFlow), 0o644))
	in := run(t, dir, "flows.yaml")

	s := strings.Repeat("x", 20_000)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bomb.json"), []byte(`{"s": "`+s+`"}`), 0o644))
	cli(t, dir, "publish", "bombs", "@bomb.json")
	cli(t, dir, "publish", "bombs", `{"s": "ab"}`) // 2 MB: within the budget
	runs := runsByInput(t, in, "bombs", 2)
	var statuses []string
	for _, r := range runs {
		statuses = append(statuses, r["status"].(string))
		if r["status"] == "dead_lettered" {
			assert.Contains(t, r["error"], "expression exceeded its memory budget")
			assert.Less(t, len(r["error"].(string)), 1000, "the reason does not carry the 20,000-character string")
		}
	}
	assert.ElementsMatch(t, []string{"dead_lettered", "succeeded"}, statuses)

	items := make([]string, 9000)
	for i := range items {
		items[i] = strconv.Itoa(i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "slow.json"), []byte(`{"items": [`+strings.Join(items, ",")+`]}`), 0o644))
	cli(t, dir, "publish", "slow", "@slow.json")
	for _, r := range runsByInput(t, in, "slow", 1) {
		assert.NotEqual(t, "succeeded", r["status"], "stopped at the timeout")
		assert.Contains(t, r["error"], "expression stopped")
		t.Logf("slow: %s: %s", r["status"], r["error"])
	}

	alive(t, in)
	peak := peakRSS(t, in.cmd.Process.Pid)
	t.Logf("engine peak RSS: %d MiB", peak>>20)
	assert.Less(t, peak, int64(maxRSS), "peak RSS")
}

// Two concurrent uploads to examples/api (5.8 GB before): each image
// is accepted (its estimate, about 600 MiB, is under max_memory) but the
// two estimates together are over the 1 GiB decoding budget, so the second
// decode waits for the first and the engine's peak RSS stays under 1 GB.
func TestConcurrentUploadsShareTheDecodeBudget(t *testing.T) {
	t.Setenv("SLUICE_API_KEYS", "key")
	dir := t.TempDir()
	// The example as it is, with room for the second upload to wait for
	// the first on a busy CI machine (each takes seconds on 2 cores).
	src, err := os.ReadFile(filepath.Join("api", "flows.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(src), "timeout: 30s\n")
	flows := filepath.Join(dir, "api.yaml")
	require.NoError(t, os.WriteFile(flows, []byte(strings.Replace(string(src), "timeout: 30s\n", "timeout: 5m\n", 1)), 0o644))
	in := run(t, dir, flows)
	body := hostile.PNG16(7000, 7000) // 49 MP of 16-bit RGBA, 0.4 MB

	var wg sync.WaitGroup
	codes := make([]int, 2)
	answers := make([]string, 2)
	for i := range codes {
		wg.Go(func() {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			fw, err := mw.CreateFormFile("image", fmt.Sprintf("big-%d.png", i))
			if !assert.NoError(t, err) {
				return
			}
			_, _ = fw.Write(body)
			_ = mw.Close()
			req, err := http.NewRequest("POST", "http://"+in.addr+"/images", &buf)
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("Content-Type", mw.FormDataContentType())
			req.Header.Set("X-API-Key", "key")
			resp, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			codes[i], answers[i] = resp.StatusCode, string(b)
		})
	}
	wg.Wait()
	for i := range codes {
		assert.Equal(t, http.StatusCreated, codes[i], "upload %d: %s\n%s", i, answers[i], in.log)
	}
	alive(t, in)
	peak := peakRSS(t, in.cmd.Process.Pid)
	t.Logf("engine peak RSS: %d MiB", peak>>20)
	assert.Less(t, peak, int64(maxRSS), "peak RSS")
}
