package ai

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	imagenodes "github.com/sluicehq/sluice/nodes/image"
	"github.com/sluicehq/sluice/storage"
)

const (
	onnxModel       = "model"
	onnxBucket      = "bucket"
	onnxKey         = "key"
	onnxName        = "name"
	onnxSessions    = "sessions"
	onnxThreads     = "threads"
	onnxInputs      = "inputs"
	onnxOutputs     = "outputs"
	onnxInto        = "into"
	onnxMaxElements = "max_elements"
	fieldMaxPixels  = "max_pixels"
	fieldMaxBytes   = "max_bytes"

	inName  = "name"
	inFrom  = "from"
	inImage = "image"

	imgWidth    = "width"
	imgHeight   = "height"
	imgLayout   = "layout"
	imgChannels = "channels"
	imgFit      = "fit"
	imgScale    = "scale"
	imgMean     = "mean"
	imgStd      = "std"

	outName   = "name"
	outAs     = "as"
	outTopK   = "top_k"
	outLabels = "labels"
)

// DefaultMaxPixels is the AI nodes' image limit: 50 megapixels, half the
// image nodes', as a model's working copies add to the decoded image.
const DefaultMaxPixels = 50_000_000

func limitFields() []nodes.Field {
	return []nodes.Field{
		{Name: fieldMaxPixels, Kind: nodes.Int, Default: DefaultMaxPixels, Min: 1, Max: 1 << 40, Doc: "Refuse larger images (width × height) without decoding them."},
		{Name: fieldMaxBytes, Kind: nodes.Int, Default: imagenodes.DefaultMaxBytes, Min: 1, Max: 1 << 40, Doc: "Refuse larger files without decoding them."},
	}
}

func limitsOf(c *nodes.Config) imagenodes.Limits {
	return imagenodes.Limits{MaxPixels: int64(c.Int(fieldMaxPixels)), MaxBytes: int64(c.Int(fieldMaxBytes))}
}

// poolFields size the session pool; shared by ai.onnx and ai.ocr.
func poolFields() []nodes.Field {
	return []nodes.Field{
		{Name: onnxSessions, Kind: nodes.Int, Default: 0, Min: 0, Max: 256, Doc: "Sessions in the pool: calls that run at once. 0: the flow's concurrency (GOMAXPROCS when the engine does not say)."},
		{Name: onnxThreads, Kind: nodes.Int, Default: 1, Min: 1, Max: 256, Doc: "Intra-op threads of each session."},
	}
}

func poolOptions(c *nodes.Config, d nodes.Deps) Options {
	o := Options{Sessions: c.Int(onnxSessions), Threads: c.Int(onnxThreads)}
	if o.Sessions == 0 {
		o.Sessions = d.Concurrency
	}
	return o
}

func init() {
	nodes.Register(nodes.Spec{
		Type:    "ai.onnx",
		Summary: "Run an ONNX model (ONNX Runtime) on tensors from the payload or on the message's image; outputs into the payload.",
		Description: "The model (a file, relative to the flow file, or an object in a bucket) is loaded once, at start, " +
			"into a pool of sessions (as many as the flow's concurrency unless sessions says otherwise). Each input " +
			"comes from an expression giving nested JSON arrays of numbers, or from the image on the envelope " +
			"(decoded once, shared with image steps), resized and normalized as the model wants. Element types, " +
			"ranks and fixed dimensions are checked against the model at validate (local files) and at start; an " +
			"input that does not fit fails permanently with the reason. Each output becomes nested arrays, or the " +
			"top k classes with labels. The result, and the payload field named by into, map output names (or " +
			"their `as`) to values. Every call is metered (kind model, the model's name, inference time, input " +
			"bytes) and timed in sluice_model_inference_seconds. Needs ONNX Runtime: ./scripts/models.sh, or " +
			EnvLibrary + ".",
		Fields: append(append([]nodes.Field{
			{Name: onnxModel, Kind: nodes.String, Doc: "Model file (.onnx), relative to the flow file's folder."},
			{Name: onnxBucket, Kind: nodes.String, Role: nodes.RoleBucket, Doc: "Bucket holding the model, read at start (instead of model)."},
			{Name: onnxKey, Kind: nodes.String, Doc: "Key of the model in bucket."},
			{Name: onnxName, Kind: nodes.String, Doc: "The model's name in meters and metrics; the file's name without .onnx by default."},
			{Name: onnxInputs, Kind: nodes.List, Required: true, Doc: "One entry per model input: from an expression or from the image.", Fields: []nodes.Field{
				{Name: inName, Kind: nodes.String, Required: true, Doc: "The model's input name."},
				{Name: inFrom, Kind: nodes.Expr, Doc: "Expression giving nested arrays of numbers, e.g. payload.features."},
				{Name: inImage, Kind: nodes.Object, Doc: "Build the input from the image on the envelope.", Fields: []nodes.Field{
					{Name: imgWidth, Kind: nodes.Int, Default: 0, Min: 0, Max: 16384, Doc: "Width to resize to; 0: the model's fixed width."},
					{Name: imgHeight, Kind: nodes.Int, Default: 0, Min: 0, Max: 16384, Doc: "Height to resize to; 0: the model's fixed height."},
					{Name: imgLayout, Kind: nodes.Enum, Options: []string{"NCHW", "NHWC"}, Default: "NCHW", Doc: "Tensor layout."},
					{Name: imgChannels, Kind: nodes.Enum, Options: []string{"rgb", "bgr", "gray"}, Default: "rgb", Doc: "Channel order."},
					{Name: imgFit, Kind: nodes.Enum, Options: []string{"stretch", "pad", "height"}, Default: "stretch", Doc: "stretch: to the size; pad: inside it, aspect kept, zeros right and bottom; height: to the height, the width the aspect gives (squeezed when wider), zeros right, as PaddleOCR's classifier and recognizer want."},
					{Name: imgScale, Kind: nodes.Float, Default: 1.0 / 255, Doc: "Pixel values (0-255) are multiplied by this, then mean is subtracted and the result divided by std (float inputs)."},
					{Name: imgMean, Kind: nodes.Any, Doc: "Mean per channel (a number or a list of 3); 0 by default. ImageNet: [0.485, 0.456, 0.406]."},
					{Name: imgStd, Kind: nodes.Any, Doc: "Standard deviation per channel (a number or a list of 3); 1 by default. ImageNet: [0.229, 0.224, 0.225]."},
				}},
			}},
			{Name: onnxOutputs, Kind: nodes.List, Doc: "Outputs to keep; all, as nested arrays, by default.", Fields: []nodes.Field{
				{Name: outName, Kind: nodes.String, Required: true, Doc: "The model's output name."},
				{Name: outAs, Kind: nodes.String, Doc: "Key in the result; the output name by default."},
				{Name: outTopK, Kind: nodes.Int, Default: 0, Min: 0, Max: 1000, Doc: "Keep the k highest scores of the last axis as [{index, label, score}]; 0 keeps the tensor."},
				{Name: outLabels, Kind: nodes.String, Doc: "Labels file, one per line in class order, relative to the flow file's folder."},
			}},
			{Name: onnxInto, Kind: nodes.String, Default: "model", Doc: "Payload field for the outputs (the payload must be an object or empty); empty: the step result only."},
			{Name: onnxMaxElements, Kind: nodes.Int, Default: 1 << 24, Min: 1, Max: 1 << 32, Doc: "Refuse an input tensor from the payload with more numbers than this."},
		}, poolFields()...), limitFields()...),
		Examples: []nodes.Example{
			{Title: "Features from the payload", YAML: "node: ai.onnx\nwith:\n  model: models/scorer.onnx\n  inputs:\n    - {name: input, from: payload.features}\n  outputs:\n    - {name: score}"},
			{Title: "Image classifier, top 3", YAML: "node: ai.onnx\nwith:\n  model: models/classifier.onnx\n  inputs:\n    - name: pixel_values\n      image: {width: 224, height: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}\n  outputs:\n    - {name: logits, as: classes, top_k: 3, labels: models/labels.txt}"},
		},
		New: newONNX,
	})
}

type onnxInput struct {
	name  string
	from  *eval.Program
	image *imageSpec
	info  Info // filled from the model
}

type onnxOutput struct {
	name, as string
	topK     int
	labels   []string
	index    int // in the model's outputs
}

type onnxNode struct {
	name        string
	file        string // local model, or ""
	bucket, key string
	data        []byte // the local model's bytes, read at validate
	opts        Options
	inputs      []onnxInput
	outputs     []onnxOutput
	into        string
	maxElems    int64
	lim         imagenodes.Limits
	flowFile    string
	store       *storage.Store

	model *Model
}

func newONNX(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	n := &onnxNode{
		bucket: c.String(onnxBucket), key: c.String(onnxKey), name: c.String(onnxName),
		opts: poolOptions(c, d), into: c.String(onnxInto), maxElems: int64(c.Int(onnxMaxElements)),
		lim: limitsOf(c), flowFile: c.Pos("").File,
	}
	var probs nodes.Problems
	add := func(err error) { probs = append(probs, err.(nodes.Problems)...) }
	switch {
	case c.Has(onnxModel) && (c.Has(onnxBucket) || c.Has(onnxKey)):
		add(c.Errorf(onnxModel, "set model, or bucket and key, not both"))
	case c.Has(onnxModel):
		n.file = relTo(n.flowFile, c.String(onnxModel))
		if n.name == "" {
			n.name = strings.TrimSuffix(filepath.Base(n.file), ".onnx")
		}
	case n.bucket != "" && n.key != "":
		if n.name == "" {
			n.name = strings.TrimSuffix(path.Base(n.key), ".onnx")
		}
	default:
		add(c.Errorf("", "set model (a file) or bucket and key"))
	}
	for i, ic := range c.List(onnxInputs) {
		in := onnxInput{name: ic.String(inName), from: ic.Expr(inFrom)}
		where := fmt.Sprintf("%s[%d]", onnxInputs, i)
		if img := ic.Object(inImage); img != nil {
			spec, err := imageSpecOf(img)
			if err != nil {
				add(c.Errorf(onnxInputs, "%s: %v", where, err))
			}
			in.image = &spec
		}
		if (in.from == nil) == (in.image == nil) {
			add(c.Errorf(onnxInputs, "%s (%s): set from or image, one of them", where, in.name))
		}
		n.inputs = append(n.inputs, in)
	}
	for _, oc := range c.List(onnxOutputs) {
		o := onnxOutput{name: oc.String(outName), as: oc.String(outAs), topK: oc.Int(outTopK)}
		if o.as == "" {
			o.as = o.name
		}
		if oc.Has(outLabels) {
			labels, err := readLabels(relTo(n.flowFile, oc.String(outLabels)))
			if err != nil {
				add(oc.Errorf(outLabels, "%v", err))
			}
			o.labels = labels
		}
		n.outputs = append(n.outputs, o)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	if err := Load(n.flowFile); err != nil {
		return nil, c.Errorf("", "%v", err)
	}
	if n.file != "" {
		data, err := os.ReadFile(n.file)
		if err != nil {
			return nil, c.Errorf(onnxModel, "%v", err)
		}
		in, out, err := Inspect(data)
		if err != nil {
			return nil, c.Errorf(onnxModel, "%s: %v", n.file, err)
		}
		if err := n.bind(in, out); err != nil {
			return nil, c.Errorf("", "model %s: %v", n.file, err)
		}
		n.data = data
	}
	n.store = d.Store
	return n, nil
}

// bind checks the configuration against the model's inputs and outputs and
// resolves image sizes and output indexes.
func (n *onnxNode) bind(in, out []Info) error {
	var errs []error
	given := map[string]bool{}
	for i := range n.inputs {
		x := &n.inputs[i]
		info, _, ok := find(in, x.name)
		if !ok {
			errs = append(errs, fmt.Errorf("no input %q; it has %s", x.name, names(in)))
			continue
		}
		given[x.name] = true
		x.info = info
		if x.image != nil {
			if err := x.image.resolve(info); err != nil {
				errs = append(errs, err)
			}
		} else if zeroOf(info.Type) == nil {
			errs = append(errs, fmt.Errorf("input %s: Sluice builds no %s tensors from JSON", info, info.Type))
		}
	}
	for _, i := range in {
		if !given[i.Name] {
			errs = append(errs, fmt.Errorf("input %s is not given: add it to inputs", i))
		}
	}
	if len(n.outputs) == 0 {
		for _, o := range out {
			n.outputs = append(n.outputs, onnxOutput{name: o.Name, as: o.Name})
		}
	}
	for i := range n.outputs {
		o := &n.outputs[i]
		info, idx, ok := find(out, o.name)
		if !ok {
			errs = append(errs, fmt.Errorf("no output %q; it has %s", o.name, names(out)))
			continue
		}
		o.index = idx
		if info.Type == "sequence" || info.Type == "map" || zeroOf(info.Type) == nil {
			errs = append(errs, fmt.Errorf("output %s cannot be converted to JSON", info))
		}
		if o.labels != nil && len(info.Shape) > 0 {
			if last := info.Shape[len(info.Shape)-1]; last >= 0 && int64(len(o.labels)) != last {
				errs = append(errs, fmt.Errorf("output %s has %d classes, the labels file %d lines", info, last, len(o.labels)))
			}
		}
		if o.topK > 0 && len(info.Shape) == 0 {
			errs = append(errs, fmt.Errorf("output %s is a scalar: top_k needs an axis", info))
		}
	}
	return errors.Join(errs...)
}

func zeroOf(typ string) any {
	switch typ {
	case Float32:
		return []float32{}
	case Float64:
		return []float64{}
	case Int64:
		return []int64{}
	case Int32:
		return []int32{}
	case Int8:
		return []int8{}
	case Uint8:
		return []uint8{}
	case Bool:
		return []bool{}
	}
	return nil
}

func (n *onnxNode) Start(ctx context.Context) error {
	data := n.data
	if n.file == "" {
		if n.store == nil {
			return fmt.Errorf("model %s/%s: no storage to read it from", n.bucket, n.key)
		}
		b, _, err := n.store.ReadAll(ctx, n.bucket, n.key, 2<<30)
		if err != nil {
			return fmt.Errorf("model %s/%s: %w", n.bucket, n.key, err)
		}
		in, out, err := Inspect(b)
		if err != nil {
			return fmt.Errorf("model %s/%s: %w", n.bucket, n.key, err)
		}
		if err := n.bind(in, out); err != nil {
			return fmt.Errorf("model %s/%s: %w", n.bucket, n.key, err)
		}
		data = b
	}
	m, err := Open(n.name, data, n.opts)
	if err != nil {
		return err
	}
	n.model, n.data = m, nil
	return nil
}

func (n *onnxNode) Close() error { return n.model.Close() }

func (n *onnxNode) Process(ctx context.Context, env *nodes.Envelope) error {
	if n.model == nil {
		return errors.New("ai.onnx: not started")
	}
	in := make([]Tensor, len(n.model.Inputs))
	var bytesIn int64
	for _, x := range n.inputs {
		_, idx, _ := n.model.Input(x.name)
		var t Tensor
		if x.image != nil {
			img, _, err := imagenodes.Decoded(ctx, env, n.lim, func(w, h int) (int, int) { return x.image.width, x.image.height })
			if err != nil {
				return err
			}
			t = x.image.tensor(img, x.info.Type)
		} else {
			v, err := x.from.Eval(env.Vars())
			if err != nil {
				return nodes.Permanent(fmt.Errorf("input %q: %w", x.name, err))
			}
			if t, err = fromJSON(v, x.info.Type, n.maxElems); err != nil {
				return nodes.Permanent(fmt.Errorf("input %q: %w", x.name, err))
			}
		}
		in[idx] = t
		bytesIn += t.Bytes()
	}
	out, d, err := n.model.Run(ctx, in)
	call := nodes.Call{Kind: "model", Name: n.name, Duration: d, BytesIn: bytesIn}
	if err != nil {
		call.Error = err.Error()
		env.Meter(call)
		if errors.Is(err, ErrShape) || errors.Is(err, ErrRun) {
			return nodes.Permanent(err)
		}
		return err
	}
	env.Meter(call)
	res := make(map[string]any, len(n.outputs))
	for _, o := range n.outputs {
		t := out[o.index]
		if o.topK > 0 {
			res[o.as] = topK(t, o.topK, o.labels)
		} else {
			res[o.as] = toJSON(t)
		}
	}
	env.SetResult(res)
	if n.into == "" {
		return nil
	}
	return env.SetPayloadField(n.into, res)
}

// topK returns the k highest scores along the last axis: one list of
// {index, label, score} when the leading axes hold one row, else one list
// per row.
func topK(t Tensor, k int, labels []string) any {
	flat := floats(t)
	last := int(t.Shape[len(t.Shape)-1])
	if last == 0 {
		return []any{}
	}
	rows := len(flat) / last
	all := make([]any, rows)
	for r := range rows {
		row := flat[r*last : (r+1)*last]
		idx := make([]int, last)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
		top := make([]any, 0, k)
		for _, i := range idx[:min(k, last)] {
			e := map[string]any{"index": i, "score": row[i]}
			if i < len(labels) {
				e["label"] = labels[i]
			}
			top = append(top, e)
		}
		all[r] = top
	}
	if rows == 1 {
		return all[0]
	}
	return all
}

func imageSpecOf(c *nodes.Config) (imageSpec, error) {
	s := imageSpec{
		width: c.Int(imgWidth), height: c.Int(imgHeight), layout: c.String(imgLayout),
		channels: c.String(imgChannels), fit: c.String(imgFit), scale: float32(c.Float(imgScale)),
	}
	var err error
	if s.mean, err = perChannel(c.Any(imgMean), 0, "mean"); err != nil {
		return s, err
	}
	if s.std, err = perChannel(c.Any(imgStd), 1, "std"); err != nil {
		return s, err
	}
	for _, v := range s.std {
		if v == 0 {
			return s, errors.New("std: 0 would divide by zero")
		}
	}
	return s, nil
}

// perChannel reads a number or a list of 1 or 3 numbers.
func perChannel(v any, def float32, name string) ([]float32, error) {
	switch x := v.(type) {
	case nil:
		return []float32{def}, nil
	case float64:
		return []float32{float32(x)}, nil
	case []any:
		if len(x) != 1 && len(x) != 3 {
			return nil, fmt.Errorf("%s: want a number or a list of 3, got a list of %d", name, len(x))
		}
		out := make([]float32, len(x))
		for i, e := range x {
			f, ok := e.(float64)
			if !ok {
				return nil, fmt.Errorf("%s[%d]: want a number, got %v", name, i, e)
			}
			out[i] = float32(f)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: want a number or a list of 3, got %v", name, v)
}

// relTo resolves a path relative to the flow file's folder.
func relTo(flowFile, p string) string {
	if p == "" || filepath.IsAbs(p) || flowFile == "" {
		return p
	}
	return filepath.Join(filepath.Dir(flowFile), p)
}

// readLabels reads a labels file: one label per line, blank lines kept
// (a class may have an empty label) except a final one.
func readLabels(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		out = append(out, strings.TrimRight(sc.Text(), "\r"))
	}
	return out, sc.Err()
}

var (
	_ nodes.Starter = (*onnxNode)(nil)
	_ nodes.Closer  = (*onnxNode)(nil)
)
