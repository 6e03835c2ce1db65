package ai_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/disintegration/imaging"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/ai"
	"github.com/sluicehq/sluice/nodes/nodestest"
	"github.com/sluicehq/sluice/storage"
)

func start(t *testing.T, n nodes.Node) {
	t.Helper()
	require.NoError(t, n.(nodes.Starter).Start(t.Context()))
	t.Cleanup(func() { assert.NoError(t, n.(nodes.Closer).Close()) })
}

// deliveries keeps each test envelope's delivery, for its metered calls.
var (
	deliveriesMu sync.Mutex
	deliveries   = map[*nodes.Envelope]*nodes.Delivery{}
)

// newEnv is an envelope of the step id, its delivery kept.
func newEnv(step string) *nodes.Envelope {
	d := nodes.NewDelivery(nil, 0)
	d.SetStep(step)
	deliveriesMu.Lock()
	deliveries[d.Envelope()] = d
	deliveriesMu.Unlock()
	return d.Envelope()
}

func deliveryOf(env *nodes.Envelope) *nodes.Delivery {
	deliveriesMu.Lock()
	defer deliveriesMu.Unlock()
	return deliveries[env]
}

func takeCalls(env *nodes.Envelope) []nodes.Call { return deliveryOf(env).TakeCalls() }

func payloadEnv(t *testing.T, js string) *nodes.Envelope {
	env := newEnv("model")
	require.NoError(t, json.Unmarshal([]byte(js), &env.Payload))
	return env
}

func TestONNXFromPayload(t *testing.T) {
	needRuntime(t)
	path := writeModel(t, "adder.onnx", addSoftmax())
	labels := filepath.Join(filepath.Dir(path), "labels.txt")
	require.NoError(t, os.WriteFile(labels, []byte("cat\ndog\nbird\n"), 0o644))
	n := nodestest.New(t, "ai.onnx", fmt.Sprintf(`
model: %s
sessions: 2
inputs:
  - {name: a, from: payload.a}
  - {name: b, from: payload.b}
  - {name: ids, from: "[7, 9]"}
outputs:
  - {name: sum}
  - {name: probs, as: top, top_k: 2, labels: %s}
  - {name: ids_out}
`, path, labels), nodes.Deps{})
	start(t, n)

	env := payloadEnv(t, `{"a": [[1, 2, 3]], "b": [[0.5, 0.5, 10]]}`)
	require.NoError(t, n.Process(t.Context(), env))
	out := env.Payload.(map[string]any)["model"].(map[string]any)
	assert.Equal(t, []any{[]any{1.5, 2.5, 13.0}}, out["sum"])
	assert.Equal(t, []any{7.0, 9.0}, out["ids_out"])
	top := out["top"].([]any)
	require.Len(t, top, 2)
	assert.Equal(t, "bird", top[0].(map[string]any)["label"])
	assert.Equal(t, 2, top[0].(map[string]any)["index"])
	assert.InDelta(t, 0.99997, top[0].(map[string]any)["score"], 1e-4)
	assert.Equal(t, "dog", top[1].(map[string]any)["label"])
	assert.Equal(t, out, env.Steps["model"], "the step result holds the same")

	calls := takeCalls(env)
	require.Len(t, calls, 1)
	assert.Equal(t, "model", calls[0].Kind)
	assert.Equal(t, "adder", calls[0].Name)
	assert.Positive(t, calls[0].Duration)
	assert.Equal(t, int64(3*4+3*4+2*8), calls[0].BytesIn)

	// A batch of two rows: one top-k list per row.
	env = payloadEnv(t, `{"a": [[0, 0, 1], [5, 0, 0]], "b": [[0, 0, 0], [0, 0, 0]]}`)
	require.NoError(t, n.Process(t.Context(), env))
	rows := env.Payload.(map[string]any)["model"].(map[string]any)["top"].([]any)
	require.Len(t, rows, 2)
	assert.Equal(t, "bird", rows[0].([]any)[0].(map[string]any)["label"])
	assert.Equal(t, "cat", rows[1].([]any)[0].(map[string]any)["label"])
}

func TestONNXBadInputsArePermanent(t *testing.T) {
	needRuntime(t)
	path := writeModel(t, "adder.onnx", addSoftmax())
	n := nodestest.New(t, "ai.onnx", fmt.Sprintf(`
model: %s
max_elements: 100
inputs:
  - {name: a, from: payload.a}
  - {name: b, from: payload.b}
  - {name: ids, from: payload.ids}
`, path), nodes.Deps{})
	start(t, n)
	for name, tc := range map[string]struct{ payload, want string }{
		"wrong width":     {`{"a": [[1, 2]], "b": [[1, 2]], "ids": [1, 2]}`, `input "a" wants shape [? 3], given [1 2]`},
		"wrong rank":      {`{"a": [1, 2, 3], "b": [[1, 2, 3]], "ids": [1, 2]}`, `input "a" wants shape [? 3] (rank 2), given [3]`},
		"ragged":          {`{"a": [[1, 2, 3], [1]], "b": [[1, 2, 3]], "ids": [1, 2]}`, `value[1] is a list of 1, not a list of 3 like its siblings`},
		"not a number":    {`{"a": [[1, "x", 3]], "b": [[1, 2, 3]], "ids": [1, 2]}`, `value[0][1] is the string "x", not a number`},
		"missing":         {`{"b": [[1, 2, 3]], "ids": [1, 2]}`, `input "a": value is null, not a number`},
		"fraction as int": {`{"a": [[1, 2, 3]], "b": [[1, 2, 3]], "ids": [1, 2.5]}`, `element 1 (2.5) is not an int64`},
		"batch mismatch":  {`{"a": [[1, 2, 3], [1, 2, 3]], "b": [[1, 2, 3], [1, 2, 3], [1, 2, 3]], "ids": [1, 2]}`, `model adder`},
		"too large":       {`{"a": [` + strings.Repeat(`[1, 2, 3],`, 40) + `[1, 2, 3]], "b": [[1, 2, 3]], "ids": [1, 2]}`, `holds 123 numbers, over the limit of 100`},
	} {
		t.Run(name, func(t *testing.T) {
			env := payloadEnv(t, tc.payload)
			err := n.Process(t.Context(), env)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, nodes.IsPermanent(err), "permanent: %v", err)
		})
	}
}

func TestONNXValidation(t *testing.T) {
	needRuntime(t)
	path := writeModel(t, "adder.onnx", addSoftmax())
	all := "\n  - {name: a, from: payload.a}\n  - {name: b, from: payload.b}\n  - {name: ids, from: payload.ids}"
	for name, tc := range map[string]struct{ with, want string }{
		"no model":       {"inputs: [{name: a, from: payload.a}]", "set model (a file) or bucket and key"},
		"both":           {"model: x.onnx\nbucket: m\nkey: x.onnx\ninputs: [{name: a, from: payload.a}]", "set model, or bucket and key, not both"},
		"missing file":   {"model: /nonexistent/x.onnx\ninputs: [{name: a, from: payload.a}]", "no such file"},
		"not a model":    {fmt.Sprintf("model: %s\ninputs: [{name: a, from: payload.a}]", writeModel(t, "junk.onnx", []byte("junk"))), "not a model ONNX Runtime can load"},
		"unknown input":  {fmt.Sprintf("model: %s\ninputs:%s\n  - {name: c, from: payload.c}", path, all), `no input "c"; it has "a" float32[? 3], "b" float32[? 3], "ids" int64[2]`},
		"input missing":  {fmt.Sprintf("model: %s\ninputs: [{name: a, from: payload.a}, {name: b, from: payload.b}]", path), `input "ids" int64[2] is not given`},
		"unknown output": {fmt.Sprintf("model: %s\ninputs:%s\noutputs: [{name: nope}]", path, all), `no output "nope"`},
		"from and image": {fmt.Sprintf("model: %s\ninputs: [{name: a, from: payload.a, image: {width: 3}}]", path), "set from or image, one of them"},
		"image on a matrix": {fmt.Sprintf("model: %s\ninputs:\n  - {name: a, image: {width: 3}}\n  - {name: b, from: payload.b}\n  - {name: ids, from: payload.ids}", path),
			`input "a" float32[? 3] is not an image tensor`},
		"labels count": {fmt.Sprintf("model: %s\ninputs:%s\noutputs: [{name: probs, top_k: 1, labels: %s}]", path, all, writeModel(t, "l.txt", []byte("a\nb\n"))),
			"has 3 classes, the labels file 2 lines"},
		"bad mean": {fmt.Sprintf("model: %s\ninputs: [{name: a, image: {mean: [1, 2]}}]", path), "mean: want a number or a list of 3, got a list of 2"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := nodestest.Build("ai.onnx", tc.with, nodes.Deps{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "test.yaml:", "the error has a position")
		})
	}
}

// TestONNXWithoutRuntime: with no library where the nodes look, the error
// says how to get it.
func TestONNXWithoutRuntime(t *testing.T) {
	t.Setenv(ai.EnvLibrary, filepath.Join(t.TempDir(), "missing.so"))
	_, err := ai.LibraryPath("")
	require.ErrorIs(t, err, ai.ErrNoRuntime)
	t.Setenv(ai.EnvLibrary, "")
	t.Setenv(ai.EnvDir, t.TempDir())
	_, err = ai.LibraryPath("")
	require.ErrorIs(t, err, ai.ErrNoRuntime)
	assert.Contains(t, err.Error(), "./scripts/models.sh")
}

// TestONNXSessionsConcurrent runs many calls on a pool of two sessions.
func TestONNXSessionsConcurrent(t *testing.T) {
	needRuntime(t)
	path := writeModel(t, "adder.onnx", addSoftmax())
	n := nodestest.New(t, "ai.onnx", fmt.Sprintf(`
model: %s
inputs:
  - {name: a, from: payload.a}
  - {name: b, from: payload.b}
  - {name: ids, from: "[1, 2]"}
outputs: [{name: sum}]
into: ""
`, path), nodes.Deps{Concurrency: 2})
	start(t, n)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			env := payloadEnv(t, fmt.Sprintf(`{"a": [[%d, 0, 0]], "b": [[0, %d, 0]]}`, i, i))
			if err := n.Process(context.Background(), env); err != nil {
				errs <- err
				return
			}
			got := env.Steps["model"].(map[string]any)["sum"].([]any)[0].([]any)
			if got[0] != float64(i) || got[1] != float64(i) {
				errs <- fmt.Errorf("call %d got %v", i, got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestONNXImageClassifier runs PaddleOCR's text direction classifier (the
// one image classifier obtainable here) through ai.onnx on a line of text
// and on the same line upside down.
func TestONNXImageClassifier(t *testing.T) {
	dir := ocrModels(t)
	labels := writeModel(t, "labels.txt", []byte("0\n180\n"))
	n := nodestest.New(t, "ai.onnx", fmt.Sprintf(`
model: %s
name: direction
inputs:
  - name: x
    image: {width: 192, height: 48, fit: height, scale: 0.00784313725, mean: 1}
outputs:
  - {name: softmax_0.tmp_0, as: angle, top_k: 1, labels: %s}
`, filepath.Join(dir, "cls.onnx"), labels), nodes.Deps{})
	start(t, n)
	line := tight(render(t, goregular.TTF, 32, "Invoice 2041: 3 items"), 6)
	for want, img := range map[string]image.Image{"0": line, "180": imaging.Rotate180(line)} {
		env := newEnv("dir")
		env.SetBody(pngBytes(t, img), "image/png")
		require.NoError(t, n.Process(t.Context(), env))
		top := env.Steps["dir"].(map[string]any)["angle"].([]any)[0].(map[string]any)
		assert.Equal(t, want, top["label"])
		assert.Greater(t, top["score"], 0.9)
	}

	env := newEnv("")
	env.SetBody([]byte("not an image"), "image/png")
	err := n.Process(t.Context(), env)
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.Contains(t, err.Error(), "not a supported image")
}

// TestONNXModelFromBucket: a model read from a bucket at start is checked
// there, as a local one is at validate.
func TestONNXModelFromBucket(t *testing.T) {
	needRuntime(t)
	store := storage.NewStore(storage.NewMem())
	require.NoError(t, store.EnsureBucket(t.Context(), "models"))
	_, err := store.PutBytes(t.Context(), "models", "v2/adder.onnx", addSoftmax(), storage.PutOptions{})
	require.NoError(t, err)
	with := `
bucket: models
key: v2/adder.onnx
inputs:
  - {name: a, from: payload.a}
  - {name: b, from: payload.b}
  - {name: ids, from: "[1, 2]"}
outputs: [{name: sum}]
`
	n := nodestest.New(t, "ai.onnx", with, nodes.Deps{Store: store})
	start(t, n)
	env := payloadEnv(t, `{"a": [[1, 1, 1]], "b": [[2, 2, 2]]}`)
	require.NoError(t, n.Process(t.Context(), env))
	assert.Equal(t, []any{[]any{3.0, 3.0, 3.0}}, env.Steps["model"].(map[string]any)["sum"])
	assert.Equal(t, "adder", takeCalls(env)[0].Name, "named after the key")

	// A wrong input name is only found once the model is read: at start.
	bad := nodestest.New(t, "ai.onnx", strings.Replace(with, "{name: a,", "{name: x,", 1), nodes.Deps{Store: store})
	err = bad.(nodes.Starter).Start(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `models/v2/adder.onnx: no input "x"`)
	require.NoError(t, bad.(nodes.Closer).Close())

	missing := nodestest.New(t, "ai.onnx", strings.Replace(with, "v2/adder", "v3/adder", 1), nodes.Deps{Store: store})
	require.Error(t, missing.(nodes.Starter).Start(t.Context()))
	require.NoError(t, missing.(nodes.Closer).Close())
}

// TestModelRunCancelled: a cancelled context runs nothing (a run under way
// is terminated), and the session serves the next call.
func TestModelRunCancelled(t *testing.T) {
	needRuntime(t)
	m, err := ai.Open("adder", addSoftmax(), ai.Options{Sessions: 1})
	require.NoError(t, err)
	defer m.Close()
	in := []ai.Tensor{
		{Shape: []int64{1, 3}, Data: []float32{1, 2, 3}},
		{Shape: []int64{1, 3}, Data: []float32{1, 1, 1}},
		{Shape: []int64{2}, Data: []int64{4, 5}},
	}
	for range 20 { // whether the session or the cancellation is seen first
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, _, err = m.Run(ctx, in)
		require.ErrorIs(t, err, context.Canceled)
	}
	out, _, err := m.Run(t.Context(), in)
	require.NoError(t, err)
	assert.Equal(t, []float32{2, 3, 4}, out[0].Data)

	// Inputs are checked before running.
	_, _, err = m.Run(t.Context(), in[:2])
	require.ErrorIs(t, err, ai.ErrShape)
	bad := append([]ai.Tensor{{Shape: []int64{1, 3}, Data: []float64{1, 2, 3}}}, in[1:]...)
	_, _, err = m.Run(t.Context(), bad)
	require.ErrorIs(t, err, ai.ErrShape)
	assert.ErrorContains(t, err, `input "a" wants float32, given float64`)
}
