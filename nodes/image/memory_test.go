package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/disintegration/imaging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/hostile"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
	"github.com/sluicehq/sluice/storage"
)

// The hostile files of issue #13 are refused from their header, before
// anything of their size is allocated, with the estimate and the limit.
func TestHostileHeadersAreRefused(t *testing.T) {
	lim := Limits{MaxPixels: DefaultMaxPixels, MaxBytes: DefaultMaxBytes, MaxMemory: DefaultMaxMemory}
	for name, body := range map[string][]byte{
		"16-bit deflate tiff, one strip": hostile.TIFF(10000, 10000),
		"16-bit png":                     hostile.PNG16(10000, 10000),
		"progressive jpeg with junk":     hostile.ProgressiveJPEG(10000, 10000),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, _, res, err := decode(t.Context(), body, lim, func(int, int) (int, int) { return 256, 256 })
			require.Error(t, err)
			assert.Nil(t, res)
			assert.Regexp(t, `of 10000×10000 pixels needs about [0-9.]+ GiB to decode, over the limit of 640 MiB \(max_memory\): refused before decoding`, err.Error())
		})
	}
}

// Estimates follow the decoders: 16-bit output, whole TIFF strips versus
// small ones, progressive JPEG coefficients.
func TestEstimates(t *testing.T) {
	px := int64(1000 * 1000)
	cfg := func(m color.Model) image.Config { return image.Config{ColorModel: m, Width: 1000, Height: 1000} }
	tiff := hostile.TIFF(1000, 1000)
	assert.Equal(t, px, tiffBlockPixels(tiff, cfg(color.RGBA64Model)), "one strip")
	assert.Greater(t, goEstimate(tiff, "tiff", cfg(color.RGBA64Model)), 30*px, "strip inflated whole beside the image")

	png16 := hostile.PNG16(1000, 1000)
	p16 := goEstimate(png16, "png", cfg(color.NRGBA64Model))
	p8 := goEstimate(png16, "png", cfg(color.NRGBAModel))
	assert.InDelta(t, float64(4*px)*1.05, float64(p16-p8), 1, "16-bit pixels take 8 bytes, 8-bit 4 (and 5% slack)")

	jpg := hostile.ProgressiveJPEG(1000, 1000)
	j := jpegHeader(jpg)
	assert.True(t, j.progressive)
	assert.InDelta(t, 1.5, j.samples, 0.001, "4:2:0")
	var base bytes.Buffer
	require.NoError(t, png.Encode(&base, image.NewGray(image.Rect(0, 0, 8, 8))))
	assert.Equal(t, jpegInfo{}, jpegHeader(base.Bytes()), "not a JPEG")
	assert.Greater(t, goEstimate(jpg, "jpeg", cfg(color.YCbCrModel)), turboEstimate(jpg, cfg(color.YCbCrModel), 125, 125, false))
}

// The budget is shared: a decode waits while it is spent, and gives up,
// transiently, when its context ends; one over the whole budget is refused.
func TestBudgetIsShared(t *testing.T) {
	size, err := DecodeBudget()
	require.NoError(t, err)
	release, err := reserve(t.Context(), size, "the first")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = reserve(ctx, 1, "the second")
	require.ErrorIs(t, err, errWait)
	require.ErrorIs(t, err, context.Canceled)
	release()
	release() // once only
	r2, err := reserve(t.Context(), size, "the second")
	require.NoError(t, err)
	r2()
	_, err = reserve(t.Context(), size+1, "a giant")
	require.ErrorContains(t, err, "over the whole decoding budget")
	assert.NotErrorIs(t, err, errWait)
}

// TestEstimatesCoverPeakMemory decodes files in a child process each and
// compares its peak RSS growth (VmHWM) with the estimate held for the
// decode, the decoded image turned (a full-size copy, as a step makes)
// and thumbnailed. The estimate must cover the growth: it bounds memory
// only if it is not an underestimate. Sizes are modest (tens of
// megapixels): the factors are per pixel.
func TestEstimatesCoverPeakMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes tens of megapixels in child processes")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory multiplies RSS: peaks are measured without it (scripts/test.sh runs the image tests again without -race)")
	}
	dir := t.TempDir()
	cases := map[string][]byte{
		"tiff 16-bit one strip": hostile.TIFF(2500, 2000),
		"png 16-bit":            hostile.PNG16(4000, 3000),
		"jpeg progressive junk": hostile.ProgressiveJPEG(4000, 3000),
	}
	var rgba bytes.Buffer
	require.NoError(t, png.Encode(&rgba, image.NewNRGBA(image.Rect(0, 0, 4000, 3000))))
	cases["png 8-bit rgba"] = rgba.Bytes()
	grad := image.NewNRGBA(image.Rect(0, 0, 4000, 3000))
	for i := range grad.Pix {
		grad.Pix[i] = byte(i * 7 / 3)
	}
	var jpg bytes.Buffer
	require.NoError(t, jpeg.Encode(&jpg, grad, &jpeg.Options{Quality: 90}))
	cases["jpeg baseline"] = jpg.Bytes()
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			path := dir + "/" + strings.ReplaceAll(name, " ", "-")
			require.NoError(t, os.WriteFile(path, body, 0o600))
			cmd := exec.Command(os.Args[0], "-test.run=^TestDecodeChild$")
			cmd.Env = append(os.Environ(), "DECODE_CHILD="+path)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			var got struct{ Before, After, Estimate int64 }
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "{") {
					require.NoError(t, json.Unmarshal(sc.Bytes(), &got))
				}
			}
			require.Positive(t, got.Estimate, "%s", out)
			growth := got.After - got.Before
			t.Logf("%s: estimate %d MiB, peak RSS growth %d MiB (%.2f of the estimate)", name, got.Estimate>>20, growth>>20, float64(growth)/float64(got.Estimate))
			assert.LessOrEqual(t, growth, got.Estimate, "the estimate covers the peak")
		})
	}
}

// TestDecodeChild is the child of TestEstimatesCoverPeakMemory.
func TestDecodeChild(t *testing.T) {
	path := os.Getenv("DECODE_CHILD")
	if path == "" {
		t.Skip("run by TestEstimatesCoverPeakMemory")
	}
	body, err := os.ReadFile(path)
	require.NoError(t, err)
	debug.FreeOSMemory()
	before := vmHWM(t)
	lim := Limits{MaxPixels: DefaultMaxPixels, MaxBytes: DefaultMaxBytes, MaxMemory: 1 << 40}
	img, _, _, _, res, err := decode(t.Context(), body, lim, nil)
	require.NoError(t, err)
	turned := imaging.Rotate90(img)
	thumb := imaging.Fit(turned, 256, 256, imaging.Lanczos)
	after := vmHWM(t)
	res.done()
	_ = thumb
	fmt.Printf("{\"Before\": %d, \"After\": %d, \"Estimate\": %d}\n", before, after, res.n)
}

// vmHWM is the process's peak resident set size, in bytes.
func vmHWM(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// Object bodies are not read whole to be refused or described: a 250 MB
// object over max_bytes is refused from its size, image.info reads a
// header's worth.
func TestObjectBodiesAreNotReadWhole(t *testing.T) {
	root := t.TempDir()
	fs, err := storage.NewFS(root, 0)
	require.NoError(t, err)
	store := storage.NewStore(fs)
	require.NoError(t, store.EnsureBucket(t.Context(), "uploads"))
	big := filepath.Join(root, "uploads", "big.png")
	f, err := os.Create(big)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(250<<20)) // sparse
	require.NoError(t, f.Close())
	// A real JPEG with 50 MB after its end, which decoders ignore.
	var jpg bytes.Buffer
	require.NoError(t, jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 64, 48)), nil))
	padded := filepath.Join(root, "uploads", "padded.jpg")
	require.NoError(t, os.WriteFile(padded, jpg.Bytes(), 0o644))
	require.NoError(t, os.Truncate(padded, 50<<20))

	envFor := func(key string) (*nodes.Envelope, *nodes.Delivery) {
		info, err := store.Stat(t.Context(), "uploads", key)
		require.NoError(t, err)
		d := nodes.NewDelivery(store, 1<<30) // a generous max_body: the node's limit applies
		d.Envelope().SetObject(info)
		return d.Envelope(), d
	}

	env, d := envFor("big.png")
	err = nodestest.New(t, "image.thumbnail", `{width: 64, height: 64}`, nodes.Deps{Store: store}).Process(t.Context(), env)
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.ErrorIs(t, err, storage.ErrTooLarge)
	assert.ErrorContains(t, err, "refused before reading it whole")
	read, _ := d.Bytes()
	assert.Zero(t, read, "nothing read")

	env, d = envFor("padded.jpg")
	require.NoError(t, nodestest.New(t, "image.info", `{into: ""}`, nodes.Deps{Store: store}).Process(t.Context(), env))
	res := env.Steps[""].(map[string]any)
	assert.Equal(t, []any{"jpeg", 64, 48, 50 << 20}, []any{res["format"], res["width"], res["height"], res["bytes"]})
	read, _ = d.Bytes()
	assert.LessOrEqual(t, read, int64(256<<10), "a header's worth read")
}
