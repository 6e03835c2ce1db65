// Package examples_test runs every example the way its README says: the
// real sluice binary, on the embedded default, in a fresh folder.
package examples_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
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

var sluiceBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-bin-")
	if err != nil {
		panic(err)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	build := exec.Command("go", "build", "-o", sluiceBin, "../cmd/sluice")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sluice:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is `sluice run` as a subprocess in its own working folder.
type instance struct {
	t    *testing.T
	dir  string
	addr string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func run(t *testing.T, dir string, args ...string) *instance {
	t.Helper()
	in := &instance{t: t, dir: dir, addr: freeAddr(t)}
	startAt(t, in, args...)
	return in
}

// startAt starts `sluice run` for in, listening on in.addr.
func startAt(t *testing.T, in *instance, args ...string) {
	t.Helper()
	in.log = &bytes.Buffer{}
	dir := in.dir
	in.cmd = exec.Command(sluiceBin, append([]string{"run", "--listen", in.addr}, args...)...)
	in.cmd.Dir = dir
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	require.NoError(t, in.cmd.Start())
	t.Cleanup(in.stop)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + in.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "sluice run did not get ready:\n%s", in.log)
}

func (in *instance) stop() {
	if in.cmd.ProcessState != nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case err := <-done:
		assert.NoError(in.t, err, "sluice run should exit cleanly on SIGTERM:\n%s", in.log)
	case <-time.After(30 * time.Second):
		_ = in.cmd.Process.Kill()
		in.t.Errorf("sluice run did not stop within 30s of SIGTERM:\n%s", in.log)
	}
}

// cli runs a sluice command in dir and returns its output.
func cli(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(sluiceBin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sluice %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

func photo(t *testing.T, path string, w, h int) {
	t.Helper()
	var buf bytes.Buffer
	photoBytes(t, &buf, w, h)
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// photoBytes encodes a w×h gradient JPEG into buf.
func photoBytes(t *testing.T, buf *bytes.Buffer, w, h int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 100, 255})
		}
	}
	require.NoError(t, jpeg.Encode(buf, img, &jpeg.Options{Quality: 90}))
}

// TestThumbnails follows examples/thumbnails/README.md.
func TestThumbnails(t *testing.T) {
	dir := t.TempDir()
	flow, err := filepath.Abs("thumbnails")
	require.NoError(t, err)
	in := run(t, dir, flow)

	photo(t, filepath.Join(dir, "photo.jpg"), 1024, 768)
	cli(t, dir, "put", "uploads", "photo.jpg")
	// The other way the README gives: copy straight into the bucket folder.
	photo(t, filepath.Join(dir, ".sluice", "buckets", "uploads", "copied.jpg"), 300, 600)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".sluice", "buckets", "uploads", "broken.jpg"), []byte("not an image"), 0o644))

	for name, want := range map[string][2]int{"photo.jpg": {256, 192}, "copied.jpg": {128, 256}} {
		path := filepath.Join(dir, ".sluice", "buckets", "thumbnails", name)
		require.Eventually(t, func() bool { _, err := os.Stat(path); return err == nil }, 20*time.Second, 20*time.Millisecond, "no thumbnail %s", name)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, "jpeg", format)
		assert.Equal(t, want, [2]int{cfg.Width, cfg.Height}, name)
	}

	// The runs ledger shows both thumbnails and the dead-lettered file.
	var runs []map[string]any
	require.Eventually(t, func() bool {
		runs = nil
		for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "runs", "--flow", "thumbnails", "--json")), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil {
				runs = append(runs, r)
			}
		}
		return len(runs) == 3
	}, 20*time.Second, 50*time.Millisecond)
	status := map[string]string{}
	for _, r := range runs {
		status[strings.SplitN(r["input"].(string), "@", 2)[0]] = r["status"].(string)
	}
	assert.Equal(t, map[string]string{
		"uploads/photo.jpg": "succeeded", "uploads/copied.jpg": "succeeded", "uploads/broken.jpg": "dead_lettered",
	}, status)

	// The metrics endpoint counts them.
	resp, err := http.Get("http://" + in.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	assert.Contains(t, body.String(), `sluice_runs_total{flow="thumbnails",status="succeeded"} 2`)
	assert.Contains(t, body.String(), `sluice_runs_total{flow="thumbnails",status="dead_lettered"} 1`)
}
