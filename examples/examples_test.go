// Package examples_test runs every example the way its README says: the
// real sluice binary, on the embedded default, in a fresh folder.
package examples_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/phototest"
	"github.com/sluicehq/sluice/internal/syncbuf"
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
	log  *syncbuf.Buffer // the process's output, written while it runs
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
	in.log = &syncbuf.Buffer{}
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

// TestThumbnails follows examples/thumbnails/README.md, on synthetic and
// real photographs and on a set of broken files.
func TestThumbnails(t *testing.T) {
	dir := t.TempDir()
	flow, err := filepath.Abs("thumbnails")
	require.NoError(t, err)
	in := run(t, dir, flow)
	uploads := filepath.Join(dir, ".sluice", "buckets", "uploads")

	want := map[string][2]int{} // thumbnail sizes by key
	photo(t, filepath.Join(dir, "photo.jpg"), 1024, 768)
	cli(t, dir, "put", "uploads", "photo.jpg")
	want["photo.jpg"] = [2]int{256, 192}
	// The other way the README gives: copy straight into the bucket folder.
	photo(t, filepath.Join(uploads, "copied.jpg"), 300, 600)
	want["copied.jpg"] = [2]int{128, 256}
	// A flat grey picture shows where the watermark went.
	grey := image.NewNRGBA(image.Rect(0, 0, 800, 600))
	for i := range grey.Pix {
		grey.Pix[i] = 100
		if i%4 == 3 {
			grey.Pix[i] = 255
		}
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, grey))
	require.NoError(t, os.WriteFile(filepath.Join(uploads, "grey.png"), buf.Bytes(), 0o644))
	want["grey.png"] = [2]int{256, 192}

	// Real photographs (the smallest of the corpus, for time), one of them
	// as a phone writes a portrait shot: stored sideways, EXIF orientation 6.
	photos := phototest.Photos(t)
	sort.Slice(photos, func(i, j int) bool { return fileSize(t, photos[i]) < fileSize(t, photos[j]) })
	for i, p := range photos[:3] {
		body, err := os.ReadFile(p)
		require.NoError(t, err)
		cfg, _, err := image.DecodeConfig(bytes.NewReader(body))
		require.NoError(t, err)
		w, h := cfg.Width, cfg.Height
		key := fmt.Sprintf("real-%d.jpg", i)
		if i == 0 {
			body, w, h, key = phototest.WithOrientation(body, 6), h, w, "portrait.jpg"
		}
		require.NoError(t, os.WriteFile(filepath.Join(uploads, key), body, 0o644))
		if w >= h {
			want[key] = [2]int{256, int(math.Round(float64(h) * 256 / float64(w)))}
		} else {
			want[key] = [2]int{int(math.Round(float64(w) * 256 / float64(h))), 256}
		}
	}

	// Broken files: each must fail with a reason naming it.
	real0, err := os.ReadFile(photos[0])
	require.NoError(t, err)
	broken := map[string][]byte{
		"text.jpg":      []byte("not an image"),
		"empty.jpg":     {},
		"truncated.jpg": real0[:len(real0)/3],
		"huge.png":      phototest.HugePNG(50000, 50000),
		"garbage.png":   append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 500)...),
	}
	for name, b := range broken {
		require.NoError(t, os.WriteFile(filepath.Join(uploads, name), b, 0o644))
	}

	for name, size := range want {
		path := filepath.Join(dir, ".sluice", "buckets", "thumbnails", name)
		require.Eventually(t, func() bool { _, err := os.Stat(path); return err == nil }, 30*time.Second, 20*time.Millisecond, "no thumbnail %s:\n%s", name, in.log)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		img, format, err := image.Decode(bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, strings.TrimPrefix(strings.Replace(filepath.Ext(name), "jpg", "jpeg", 1), "."), format, name)
		assert.Equal(t, size, [2]int{img.Bounds().Dx(), img.Bounds().Dy()}, name)
		if name == "grey.png" {
			b := img.Bounds()
			assert.Positive(t, brightPixels(img, image.Rect(b.Dx()/2, b.Dy()*3/4, b.Dx(), b.Dy())), "watermark at the bottom right")
			assert.Zero(t, brightPixels(img, image.Rect(0, 0, b.Dx(), b.Dy()/2)), "and not elsewhere")
		}
	}

	// The runs ledger shows every thumbnail and every broken file, failed
	// with its reason.
	var runs []map[string]any
	require.Eventually(t, func() bool {
		runs = nil
		for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "runs", "--flow", "thumbnails", "--json")), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil {
				runs = append(runs, r)
			}
		}
		return len(runs) == len(want)+len(broken)
	}, 30*time.Second, 50*time.Millisecond)
	for _, r := range runs {
		key := strings.TrimPrefix(strings.SplitN(r["input"].(string), "@", 2)[0], "uploads/")
		if _, ok := broken[key]; ok {
			assert.Equal(t, "dead_lettered", r["status"], key)
			assert.Contains(t, r["error"], "uploads/"+key, "the reason names the file")
		} else {
			assert.Equal(t, "succeeded", r["status"], "%s: %v", key, r["error"])
		}
	}
	out := cli(t, dir, "runs", "--flow", "thumbnails", "--status", "dead_lettered")
	assert.Contains(t, out, "over the limit of 100000000")

	// One row per image in the example's table.
	db, err := sql.Open("sqlite3", filepath.Join(dir, ".sluice", "data.db"))
	require.NoError(t, err)
	defer db.Close()
	rows := map[string][4]int{}
	q, err := db.Query(`SELECT key, width, height, thumbnail_width, thumbnail_height FROM images`)
	require.NoError(t, err)
	for q.Next() {
		var key string
		var r [4]int
		require.NoError(t, q.Scan(&key, &r[0], &r[1], &r[2], &r[3]))
		rows[key] = r
	}
	require.NoError(t, q.Err())
	require.Len(t, rows, len(want))
	for key, size := range want {
		assert.Equal(t, size, [2]int{rows[key][2], rows[key][3]}, key)
	}
	assert.Equal(t, [2]int{1024, 768}, [2]int{rows["photo.jpg"][0], rows["photo.jpg"][1]})
	assert.Less(t, rows["portrait.jpg"][0], rows["portrait.jpg"][1], "portrait source recorded upright")

	// The metrics endpoint counts them.
	resp, err := http.Get("http://" + in.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	assert.Contains(t, body.String(), fmt.Sprintf(`sluice_runs_total{flow="thumbnails",status="succeeded"} %d`, len(want)))
	assert.Contains(t, body.String(), fmt.Sprintf(`sluice_runs_total{flow="thumbnails",status="dead_lettered"} %d`, len(broken)))
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

// brightPixels counts near-white pixels (the watermark's) in r.
func brightPixels(img image.Image, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.GrayModel.Convert(img.At(x, y)).(color.Gray)
			if c.Y > 160 {
				n++
			}
		}
	}
	return n
}

// TestHTTPFlowOnTheListener: an http-triggered flow is served by `sluice
// run` on its listener, next to /healthz and /metrics.
func TestHTTPFlowOnTheListener(t *testing.T) {
	dir := t.TempDir()
	flow := filepath.Join(dir, "api.yaml")
	require.NoError(t, os.WriteFile(flow, []byte(`
name: hello
on:
  http: {path: "/hello/{name}", methods: [GET]}
steps:
  - node: transform
    with: {payload: '{"greeting": "hello " + request.params.name}'}
`), 0o644))
	in := run(t, dir, flow)
	resp, err := http.Get("http://" + in.addr + "/hello/ada")
	require.NoError(t, err)
	defer resp.Body.Close()
	var got map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, map[string]any{"greeting": "hello ada"}, got)
	health, err := http.Get("http://" + in.addr + "/healthz")
	require.NoError(t, err)
	health.Body.Close()
	assert.Equal(t, 200, health.StatusCode)
}
