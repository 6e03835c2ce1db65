package ai_test

import (
	"fmt"
	"image"
	"strings"
	"testing"

	"github.com/disintegration/imaging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/sluicehq/sluice/internal/ocrtest"
	"github.com/sluicehq/sluice/internal/phototest"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

func ocrRun(t *testing.T, n nodes.Node, body []byte) (map[string]any, []nodes.Call, error) {
	t.Helper()
	env := newEnv("")
	deliveryOf(env).SetStep("ocr")
	env.SetBody(body, "")
	err := n.Process(t.Context(), env)
	if err != nil {
		return nil, takeCalls(env), err
	}
	return env.Steps["ocr"].(map[string]any), takeCalls(env), nil
}

var page = []string{
	"Invoice 2041 from Sluice Labs",
	"3 items shipped on 12 March 2026",
	"Ship to: 42 Rue de la Paix, Paris (FR)",
	"Ref #A-7731 / paid by card",
	"Total due: 148.50 EUR",
}

func TestOCRAccuracy(t *testing.T) {
	ocrModels(t)
	n := nodestest.New(t, "ai.ocr", `{sessions: 1}`, nodes.Deps{})
	start(t, n)
	want := strings.Join(page, "\n")
	fonts := map[string][]byte{"regular": goregular.TTF, "bold": gobold.TTF, "mono": gomono.TTF}
	var total, errs int
	for name, ttf := range fonts {
		for _, px := range []float64{18, 28, 44} {
			img := render(t, ttf, px, page...)
			res, calls, err := ocrRun(t, n, pngBytes(t, img))
			require.NoError(t, err)
			got := res["text"].(string)
			d := ocrtest.Distance(ocrtest.Normalize(got), ocrtest.Normalize(want))
			total += len([]rune(ocrtest.Normalize(want)))
			errs += d
			t.Logf("%s %.0fpx: %d edits: %q", name, px, d, got)
			assert.Equal(t, 0, res["rotated"])
			assert.Len(t, calls, 3, "one metered call per model")
		}
	}
	acc := 1 - float64(errs)/float64(total)
	t.Logf("character accuracy %.4f (%d edits in %d characters)", acc, errs, total)
	assert.GreaterOrEqual(t, acc, 0.95)
}

func TestOCRUpsideDown(t *testing.T) {
	ocrModels(t)
	n := nodestest.New(t, "ai.ocr", `{sessions: 1}`, nodes.Deps{})
	start(t, n)
	img := imaging.Rotate180(render(t, goregular.TTF, 28, page...))
	res, _, err := ocrRun(t, n, pngBytes(t, img))
	require.NoError(t, err)
	t.Logf("%q", res["text"])
	assert.Equal(t, 180, res["rotated"])
	want := ocrtest.Normalize(strings.Join(page, "\n"))
	d := ocrtest.Distance(ocrtest.Normalize(res["text"].(string)), want)
	assert.LessOrEqual(t, float64(d)/float64(len(want)), 0.1)
	lines := res["lines"].([]any)
	require.NotEmpty(t, lines)
	box := lines[0].(map[string]any)["box"].([]any)
	// The first line of the turned page is at the bottom of the image; its
	// box starts (top-left of the text) at the bottom right.
	b := img.Bounds()
	assert.Greater(t, box[0].([]any)[1], float64(b.Dy())/2)
	assert.Greater(t, box[0].([]any)[0], float64(b.Dx())/2)
}

func TestOCRBadInput(t *testing.T) {
	ocrModels(t)
	n := nodestest.New(t, "ai.ocr", `{sessions: 1, max_pixels: 1000000}`, nodes.Deps{})
	start(t, n)
	// With the default limits, a 100 MP image is refused before decoding.
	def := nodestest.New(t, "ai.ocr", `{sessions: 1}`, nodes.Deps{})
	start(t, def)
	_, _, err := ocrRun(t, def, phototest.HugePNG(10000, 10000)) // 100 MP
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.Contains(t, err.Error(), "10000×10000 pixels, over the limit of 50000000")
	for name, body := range map[string][]byte{
		"not an image": []byte("hello"),
		"too large":    pngBytes(t, image.NewGray(image.Rect(0, 0, 2000, 1000))),
		"100 MP":       phototest.HugePNG(10000, 10000),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := ocrRun(t, n, body)
			require.Error(t, err)
			assert.True(t, nodes.IsPermanent(err), "%v", err)
			t.Log(err)
		})
	}
	// A blank image has no text: no lines, no error.
	res, _, err := ocrRun(t, n, pngBytes(t, image.NewGray(image.Rect(0, 0, 300, 200))))
	require.NoError(t, err)
	assert.Empty(t, res["lines"])
	assert.Equal(t, "", res["text"])
}

func TestOCRMissingModels(t *testing.T) {
	needRuntime(t)
	_, err := nodestest.Build("ai.ocr", fmt.Sprintf("models: %s", t.TempDir()), nodes.Deps{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "det.onnx")
	assert.Contains(t, err.Error(), "./scripts/models.sh")
}

// TestOCRNoisyPhoto: a page photographed rather than scanned (tilted,
// unevenly lit, blurred, grainy, saved as a JPEG) is still mostly read.
func TestOCRNoisyPhoto(t *testing.T) {
	ocrModels(t)
	n := nodestest.New(t, "ai.ocr", `{sessions: 1}`, nodes.Deps{})
	start(t, n)
	res, _, err := ocrRun(t, n, ocrtest.Photo(render(t, goregular.TTF, 30, page...), 1))
	require.NoError(t, err)
	acc := ocrtest.Accuracy(res["text"].(string), strings.Join(page, "\n"))
	t.Logf("accuracy %.3f: %q", acc, res["text"])
	assert.GreaterOrEqual(t, acc, 0.9)
}

// TestOCRLargeImage: an image far larger than the detector's side is
// worked on scaled down (memory stays bounded), and its boxes are still in
// the image's own pixels.
func TestOCRLargeImage(t *testing.T) {
	ocrModels(t)
	n := nodestest.New(t, "ai.ocr", `{sessions: 1}`, nodes.Deps{})
	start(t, n)
	small := render(t, goregular.TTF, 40, page...)
	big := imaging.Resize(small, small.Bounds().Dx()*6, 0, imaging.Linear)
	res, _, err := ocrRun(t, n, pngBytes(t, big))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, ocrtest.Accuracy(res["text"].(string), strings.Join(page, "\n")), 0.95, "%q", res["text"])
	assert.Equal(t, big.Bounds().Dx(), res["width"])
	box := res["lines"].([]any)[len(page)-1].(map[string]any)["box"].([]any)
	assert.Greater(t, box[2].([]any)[1], 0.7*float64(big.Bounds().Dy()), "the last line's bottom, in the large image's pixels")
}
