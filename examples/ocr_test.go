package examples_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/disintegration/imaging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goitalic"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/sluicehq/sluice/internal/ocrtest"
	"github.com/sluicehq/sluice/nodes/ai"
)

// needOCRModels skips the test when ./scripts/models.sh has not been run
// (fails it under CI).
func needOCRModels(t *testing.T, flowFile string) {
	t.Helper()
	_, err := ai.LibraryPath(flowFile)
	if err == nil {
		dir, _ := ai.Dir(flowFile)
		_, err = os.Stat(filepath.Join(dir, "ppocr", "rec.onnx"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ONNX Runtime and the OCR models are required under CI (./scripts/models.sh): %v", err)
		}
		t.Skipf("no ONNX Runtime or OCR models (./scripts/models.sh): %v", err)
	}
}

var ocrPage = []string{
	"Invoice 2041 from Sluice Labs",
	"3 items shipped on 12 March 2026",
	"Ship to: 42 Rue de la Paix, Paris (FR)",
	"Ref #A-7731 / paid by card",
	"Total due: 148.50 EUR",
}

func pngOf(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

// TestOCR follows examples/ocr/README.md through the real binary: pages
// rendered in several fonts and sizes, one upside down and one looking
// photographed, dropped into scans; results in ocr-results and SQLite; the
// HTTP route answering synchronously; broken files dead-lettered.
func TestOCR(t *testing.T) {
	flow, err := filepath.Abs(filepath.Join("ocr", "flow.yaml"))
	require.NoError(t, err)
	needOCRModels(t, flow)
	dir := t.TempDir()
	t.Setenv("SLUICE_API_KEYS", "ocr-test-key")
	in := run(t, dir, flow)
	scans := filepath.Join(dir, ".sluice", "buckets", "scans")
	require.NoError(t, os.MkdirAll(scans, 0o755))
	want := strings.Join(ocrPage, "\n")

	clean := map[string][]byte{}
	for name, ttf := range map[string][]byte{"regular": goregular.TTF, "bold": gobold.TTF, "italic": goitalic.TTF, "mono": gomono.TTF} {
		for _, px := range []float64{20, 32, 48} {
			img, err := ocrtest.Render(ttf, px, ocrPage...)
			require.NoError(t, err)
			clean[fmt.Sprintf("%s-%.0f.png", name, px)] = pngOf(t, img)
		}
	}
	img, err := ocrtest.Render(goregular.TTF, 32, ocrPage...)
	require.NoError(t, err)
	hard := map[string][]byte{
		"upside-down.png": pngOf(t, imaging.Rotate180(img)),
		"photo.jpg":       ocrtest.Photo(img, 7),
	}
	broken := map[string][]byte{"notes.png": []byte("not an image at all")}
	for _, set := range []map[string][]byte{clean, hard, broken} {
		for name, b := range set {
			require.NoError(t, os.WriteFile(filepath.Join(scans, name), b, 0o644))
		}
	}

	results := filepath.Join(dir, ".sluice", "buckets", "ocr-results")
	read := func(name string) map[string]any {
		path := filepath.Join(results, name+".json")
		require.Eventually(t, func() bool { _, err := os.Stat(path); return err == nil }, 2*time.Minute, 50*time.Millisecond, "no result for %s:\n%s", name, in.log)
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		var r map[string]any
		require.NoError(t, json.Unmarshal(b, &r), "%s", b)
		return r
	}
	var edits, chars int
	for name := range clean {
		r := read(name)
		got := ocrtest.Normalize(r["text"].(string))
		d := ocrtest.Distance(got, ocrtest.Normalize(want))
		edits += d
		chars += len([]rune(ocrtest.Normalize(want)))
		t.Logf("%s: %d edits, confidence %v, %v ms", name, d, r["confidence"], r["ms"])
		assert.EqualValues(t, 0, r["rotated"], name)
		lines := r["lines"].([]any)
		assert.Len(t, lines, len(ocrPage), name)
		for _, l := range lines {
			assert.Len(t, l.(map[string]any)["box"], 4, name)
		}
	}
	acc := 1 - float64(edits)/float64(chars)
	t.Logf("clean set: character accuracy %.4f (%d edits in %d characters)", acc, edits, chars)
	assert.GreaterOrEqual(t, acc, 0.95)

	up := read("upside-down.png")
	assert.EqualValues(t, 180, up["rotated"])
	assert.GreaterOrEqual(t, ocrtest.Accuracy(up["text"].(string), want), 0.9, "upside down: %q", up["text"])
	photo := read("photo.jpg")
	assert.GreaterOrEqual(t, ocrtest.Accuracy(photo["text"].(string), want), 0.85, "photo: %q", photo["text"])

	// One row per image, as the README shows.
	db, err := sql.Open("sqlite3", filepath.Join(dir, ".sluice", "data.db"))
	require.NoError(t, err)
	defer db.Close()
	var rows int
	var minConf, minMS float64
	require.NoError(t, db.QueryRow(`SELECT count(*), min(confidence), min(ms) FROM ocr`).Scan(&rows, &minConf, &minMS))
	assert.Equal(t, len(clean)+len(hard), rows)
	assert.Greater(t, minConf, 0.5)
	assert.Positive(t, minMS)
	var text string
	require.NoError(t, db.QueryRow(`SELECT text FROM ocr WHERE key = 'bold-48.png'`).Scan(&text))
	assert.Equal(t, want, text)

	// The broken file is dead-lettered with the reason.
	require.Eventually(t, func() bool {
		return strings.Contains(cli(t, dir, "runs", "--flow", "ocr-scans", "--status", "dead_lettered"), "not a supported image")
	}, time.Minute, 100*time.Millisecond)

	// The HTTP route answers the text synchronously.
	post := func(key, ctype string, body []byte) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, "http://"+in.addr+"/ocr", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", ctype)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	status, out := post("ocr-test-key", "image/png", clean["regular-32.png"])
	require.Equal(t, http.StatusOK, status, "%v", out)
	assert.Equal(t, want, out["text"])
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, err := mw.CreateFormFile("image", "scan.png")
	require.NoError(t, err)
	_, err = fw.Write(clean["mono-32.png"])
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	status, out = post("ocr-test-key", mw.FormDataContentType(), form.Bytes())
	require.Equal(t, http.StatusOK, status, "multipart: %v", out)
	assert.Equal(t, want, out["text"])
	status, _ = post("", "image/png", clean["regular-32.png"])
	assert.Equal(t, http.StatusUnauthorized, status)
	status, out = post("ocr-test-key", "image/png", []byte("not an image"))
	assert.Equal(t, http.StatusUnprocessableEntity, status, "%v", out)

	// Inference time per model is on /metrics.
	resp, err := http.Get("http://" + in.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, m := range []string{"ppocr-det", "ppocr-cls", "ppocr-rec"} {
		assert.Contains(t, string(metrics), `sluice_model_inference_seconds_count{model="`+m+`",outcome="ok"}`)
		assert.Contains(t, string(metrics), `sluice_call_duration_seconds_count{flow="ocr-scans",kind="model",name="`+m+`"}`)
	}

	// Billed per call: sluice usage --calls sums the inferences per flow,
	// model and day.
	require.Eventually(t, func() bool {
		calls := cli(t, dir, "usage", "--calls", "--flow", "ocr-scans", "--json")
		return strings.Contains(calls, `"kind":"model","name":"ppocr-det"`) && strings.Contains(calls, `"name":"ppocr-rec"`)
	}, 20*time.Second, 100*time.Millisecond, "usage --calls lists the models:\n%s", in.log)
}
