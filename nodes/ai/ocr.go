package ai

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
	imagenodes "github.com/sluicehq/sluice/nodes/image"
)

const (
	ocrModels        = "models"
	ocrDetector      = "detector"
	ocrClassifier    = "classifier"
	ocrRecognizer    = "recognizer"
	ocrDictionary    = "dictionary"
	ocrMaxSide       = "max_side"
	ocrThreshold     = "threshold"
	ocrBoxThreshold  = "box_threshold"
	ocrUnclip        = "unclip_ratio"
	ocrMinConfidence = "min_confidence"
	ocrClassify      = "classify"
	ocrClsThreshold  = "classify_threshold"
	ocrMaxLines      = "max_lines"
	ocrInto          = "into"
	ocrFoldWidth     = "fold_width"

	lineHeight   = 48   // the classifier's and the recognizer's input height
	clsWidth     = 192  // the classifier's input width
	recMinWidth  = 48   // narrower lines are padded to this
	recBatchSpan = 1.15 // a batch's widest line is at most this much wider than its narrowest
	recMaxWidth  = 3200 // wider lines are squeezed: memory stays bounded
	ocrBatchSize = 6    // lines per classifier and recognizer call
	workSide     = 4    // the working copy's longest side, in detector sides
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "ai.ocr",
		Summary: "Read the text of an image (PaddleOCR on ONNX Runtime): lines with text, confidence and boxes.",
		Description: "Runs PaddleOCR's pipeline on the image on the envelope (decoded once, shared with image steps): " +
			"the DB text detector on the image scaled to max_side, a rotated box per text region, the direction " +
			"classifier turning upside-down lines (180°) over, and the CRNN recognizer with CTC decoding against the " +
			"dictionary. The result, and the payload field named by into, hold text (the lines, top to bottom, " +
			"boxes on one row joined by spaces), confidence (mean over lines), lines [{text, confidence, box: " +
			"[[x, y] × 4] in the image's pixels, clockwise from top-left}], width, height, ms (the step's time, " +
			"decoding included) and rotated (180 when " +
			"most lines were upside down; the lines are then in reading order of the turned page). Lines under " +
			"min_confidence are dropped. The models are loaded at start (from models, by default the ppocr folder " +
			"./scripts/models.sh fills); each model's calls on a message are metered as one call (kind model) " +
			"and timed in sluice_model_inference_seconds. Bad input (not an image, over max_pixels) fails " +
			"permanently.",
		Fields: append(append([]nodes.Field{
			{Name: ocrModels, Kind: nodes.String, Doc: "Folder holding det.onnx, cls.onnx, rec.onnx and keys.txt, relative to the flow file's folder; by default the ppocr folder of the ONNX folder (see ./scripts/models.sh)."},
			{Name: ocrDetector, Kind: nodes.String, Doc: "Detector model file, instead of models/det.onnx."},
			{Name: ocrClassifier, Kind: nodes.String, Doc: "Direction classifier model file, instead of models/cls.onnx."},
			{Name: ocrRecognizer, Kind: nodes.String, Doc: "Recognizer model file, instead of models/rec.onnx."},
			{Name: ocrDictionary, Kind: nodes.String, Doc: "The recognizer's dictionary (one character per line), instead of models/keys.txt; another language's recognizer comes with its own."},
			{Name: ocrMaxSide, Kind: nodes.Int, Default: 960, Min: 32, Max: 4096, Doc: "The detector sees the image scaled down to this longest side (larger finds smaller text, costs more)."},
			{Name: ocrThreshold, Kind: nodes.Float, Default: 0.3, Min: 0.01, Max: 0.99, Doc: "Probability over which a detector pixel is text."},
			{Name: ocrBoxThreshold, Kind: nodes.Float, Default: 0.6, Min: 0.01, Max: 0.99, Doc: "Mean probability a text box needs to be kept."},
			{Name: ocrUnclip, Kind: nodes.Float, Default: 1.5, Min: 0.5, Max: 4, Doc: "How much detected regions are grown (area × ratio / perimeter) into line boxes."},
			{Name: ocrMinConfidence, Kind: nodes.Float, Default: 0.5, Min: 0, Max: 1, Doc: "Drop recognized lines below this confidence."},
			{Name: ocrClassify, Kind: nodes.Bool, Default: true, Doc: "Run the direction classifier (turns upside-down lines over)."},
			{Name: ocrClsThreshold, Kind: nodes.Float, Default: 0.9, Min: 0.5, Max: 1, Doc: "Confidence the classifier needs to turn a line."},
			{Name: ocrMaxLines, Kind: nodes.Int, Default: 500, Min: 1, Max: 100000, Doc: "Recognize at most this many boxes (the largest)."},
			{Name: ocrFoldWidth, Kind: nodes.Bool, Default: true, Doc: "Write full-width forms of ASCII (！，：（） that the Chinese-trained recognizer may give for Latin text) as ASCII; false keeps them (Chinese text)."},
			{Name: ocrInto, Kind: nodes.String, Default: "ocr", Doc: "Payload field for the result (the payload must be an object or empty); empty: the step result only."},
		}, poolFields()...), limitFields()...),
		Examples: []nodes.Example{
			{Title: "Text of scans", YAML: "node: ai.ocr\nwith:\n  max_side: 1280\n  min_confidence: 0.6"},
		},
		New: newOCR,
	})
}

type ocrNode struct {
	det, cls, rec string // model files
	dictFile      string
	dict          []string // index i+1 of the recognizer's classes; blank is 0
	space         int      // the space's class, or -1
	opts          Options
	maxSide       int
	thresh, boxTh float32
	unclip        float64
	minConf       float64
	classify      bool
	clsTh         float32
	maxLines      int
	into          string
	foldWidth     bool
	lim           imagenodes.Limits

	detM, clsM, recM *Model
}

func newOCR(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	file := c.Pos("").File
	n := &ocrNode{
		opts: poolOptions(c, d), maxSide: c.Int(ocrMaxSide), thresh: float32(c.Float(ocrThreshold)),
		boxTh: float32(c.Float(ocrBoxThreshold)), unclip: c.Float(ocrUnclip), minConf: c.Float(ocrMinConfidence),
		classify: c.Bool(ocrClassify), clsTh: float32(c.Float(ocrClsThreshold)), maxLines: c.Int(ocrMaxLines),
		into: c.String(ocrInto), foldWidth: c.Bool(ocrFoldWidth), lim: limitsOf(c),
	}
	if err := Load(file); err != nil {
		return nil, c.Errorf("", "%v", err)
	}
	dir := relTo(file, c.String(ocrModels))
	if dir == "" {
		d, _ := Dir(file)
		dir = filepath.Join(d, "ppocr")
	}
	pick := func(field, def string) string {
		if c.Has(field) {
			return relTo(file, c.String(field))
		}
		return filepath.Join(dir, def)
	}
	n.det, n.cls, n.rec, n.dictFile = pick(ocrDetector, "det.onnx"), pick(ocrClassifier, "cls.onnx"), pick(ocrRecognizer, "rec.onnx"), pick(ocrDictionary, "keys.txt")
	var probs nodes.Problems
	for _, f := range []struct{ field, path string }{{ocrDetector, n.det}, {ocrClassifier, n.cls}, {ocrRecognizer, n.rec}, {ocrDictionary, n.dictFile}} {
		if f.path == n.cls && !n.classify {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			field := f.field
			if !c.Has(field) {
				field = ocrModels
			}
			probs = append(probs, c.Errorf(field, "%v; %s", err, howToGet).(nodes.Problems)...)
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	dict, err := readLabels(n.dictFile)
	if err != nil {
		return nil, c.Errorf(ocrDictionary, "%v", err)
	}
	for len(dict) > 0 && dict[len(dict)-1] == "" {
		dict = dict[:len(dict)-1]
	}
	n.dict = dict
	return n, nil
}

func (n *ocrNode) Start(ctx context.Context) error {
	open := func(name, file string, check func(in, out []Info) error) (*Model, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		m, err := Open(name, data, n.opts)
		if err != nil {
			return nil, err
		}
		if err := check(m.Inputs, m.Outputs); err != nil {
			return nil, errors.Join(fmt.Errorf("%s (%s): %w", name, file, err), m.Close())
		}
		return m, nil
	}
	image4 := func(want int64) func(in, out []Info) error {
		return func(in, out []Info) error {
			if len(in) != 1 || len(out) != 1 || in[0].Type != Float32 || out[0].Type != Float32 || len(in[0].Shape) != 4 || in[0].Shape[1] != 3 {
				return fmt.Errorf("want one float32 image input [N 3 H W] and one output, it has inputs %s, outputs %s", names(in), names(out))
			}
			if h := in[0].Shape[2]; want > 0 && h >= 0 && h != want {
				return fmt.Errorf("want input height %d, it has %s", want, names(in))
			}
			return nil
		}
	}
	var err error
	if n.detM, err = open("ppocr-det", n.det, image4(0)); err != nil {
		return err
	}
	if n.classify {
		if n.clsM, err = open("ppocr-cls", n.cls, image4(lineHeight)); err != nil {
			return err
		}
	}
	n.recM, err = open("ppocr-rec", n.rec, func(in, out []Info) error {
		if err := image4(lineHeight)(in, out); err != nil {
			return err
		}
		classes := out[0].Shape[len(out[0].Shape)-1]
		switch classes {
		case int64(len(n.dict)) + 2: // blank, the dictionary, space
			n.dict = append(n.dict, " ")
			n.space = len(n.dict)
		case int64(len(n.dict)) + 1:
			n.space = -1
		default:
			return fmt.Errorf("recognizes %d classes; the dictionary %s has %d characters (want %d or %d)", classes, n.dictFile, len(n.dict), classes-1, classes-2)
		}
		return nil
	})
	return err
}

func (n *ocrNode) Close() error {
	return errors.Join(n.detM.Close(), n.clsM.Close(), n.recM.Close())
}

// meter sums one model's calls on a message.
type meter struct {
	d     time.Duration
	bytes int64
	err   error
}

func (m *meter) run(ctx context.Context, model *Model, in Tensor) (Tensor, error) {
	out, d, err := model.Run(ctx, []Tensor{in})
	m.d += d
	m.bytes += in.Bytes()
	if err != nil {
		m.err = err
		return Tensor{}, err
	}
	return out[0], nil
}

func (m *meter) report(env *nodes.Envelope, model *Model) {
	if m.bytes == 0 {
		return
	}
	c := nodes.Call{Kind: "model", Name: model.Name, Duration: m.d, BytesIn: m.bytes}
	if m.err != nil {
		c.Error = m.err.Error()
	}
	env.Meter(c)
}

// ocrLine is one recognized box.
type ocrLine struct {
	r       rect // in the image's pixels
	crop    *image.NRGBA
	flipped bool
	text    string
	conf    float64
}

func (n *ocrNode) Process(ctx context.Context, env *nodes.Envelope) error {
	if n.detM == nil {
		return errors.New("ai.ocr: not started")
	}
	began := time.Now()
	img, size, err := imagenodes.Decoded(ctx, env, n.lim, func(w, h int) (int, int) {
		s := min(1, float64(n.maxSide)/float64(max(w, h)))
		return int(float64(w) * s), int(float64(h) * s)
	})
	if err != nil {
		return err
	}
	// The working copy: NRGBA pixels, at most workSide × the detector's
	// side (recognition needs no more), so memory stays bounded whatever
	// the decoded image's size.
	src, ok := img.(*image.NRGBA)
	if b := img.Bounds(); max(b.Dx(), b.Dy()) > workSide*n.maxSide {
		src = imaging.Fit(img, workSide*n.maxSide, workSide*n.maxSide, imaging.Linear)
	} else if !ok || b.Min != (image.Point{}) {
		src = imaging.Clone(img)
	}
	var dm, cm, rm meter
	defer func() {
		dm.report(env, n.detM)
		if n.clsM != nil {
			cm.report(env, n.clsM)
		}
		rm.report(env, n.recM)
	}()
	lines, err := n.detect(ctx, &dm, src)
	if err != nil {
		return n.fail(err)
	}
	if n.classify {
		if err := n.orient(ctx, &cm, lines); err != nil {
			return n.fail(err)
		}
	}
	if err := n.recognize(ctx, &rm, lines); err != nil {
		return n.fail(err)
	}
	res := n.result(lines, size, float64(size.X)/float64(src.Bounds().Dx()))
	res["ms"] = float64(time.Since(began).Microseconds()) / 1000
	env.SetResult(res)
	if n.into == "" {
		return nil
	}
	return env.SetPayloadField(n.into, res)
}

func (n *ocrNode) fail(err error) error {
	if errors.Is(err, ErrShape) || errors.Is(err, ErrRun) {
		return nodes.Permanent(err)
	}
	return err
}

// detect runs the detector and crops each text box as a line image.
func (n *ocrNode) detect(ctx context.Context, m *meter, src *image.NRGBA) ([]*ocrLine, error) {
	w, h := src.Bounds().Dx(), src.Bounds().Dy()
	s := min(1, float64(n.maxSide)/float64(max(w, h)))
	round32 := func(v float64) int { return max(32, int(math.Round(v/32))*32) }
	dw, dh := round32(float64(w)*s), round32(float64(h)*s)
	in := imageSpec{width: dw, height: dh, layout: "NCHW", channels: "bgr", fit: "stretch", scale: 1.0 / 255,
		mean: []float32{0.485, 0.456, 0.406}, std: []float32{0.229, 0.224, 0.225}}
	out, err := m.run(ctx, n.detM, in.tensor(src, Float32))
	if err != nil {
		return nil, err
	}
	prob := out.Float32s()
	if len(out.Shape) != 4 || int64(len(prob)) != int64(dw)*int64(dh) {
		return nil, fmt.Errorf("%w: detector output %s for a %d×%d input", ErrRun, shapeString(out.Shape), dw, dh)
	}
	regions := detRegions(prob, dw, dh, n.thresh, n.boxTh, n.maxLines)
	sx, sy := float64(w)/float64(dw), float64(h)/float64(dh)
	rs := make([]rect, 0, len(regions))
	for _, rg := range regions {
		r := unclip(rg.r, n.unclip)
		// To the image's pixels: the map was stretched by (sx, sy).
		cs := r.corners()
		var ps []pt
		for _, c := range cs {
			ps = append(ps, c.scale(sx, sy))
		}
		if r = minAreaRect(convexHull(ps)); min(r.w, r.h) >= 3 {
			rs = append(rs, r)
		}
	}
	rs = mergeRows(rs, 0.6)
	lines := make([]*ocrLine, 0, len(rs))
	for _, r := range rs {
		if r.h >= 1.5*r.w { // vertical text: read top to bottom
			r.u, r.v, r.w, r.h = r.v, r.u.mul(-1), r.h, r.w
		}
		lines = append(lines, &ocrLine{r: r, crop: cropLine(src, r, lineHeight, recMaxWidth)})
	}
	// Reading order: top to bottom, left to right within a row.
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].r.c.y < lines[j].r.c.y })
	for i := 1; i < len(lines); i++ {
		for j := i; j > 0 && sameRow(lines[j-1], lines[j]) && lines[j].r.c.x < lines[j-1].r.c.x; j-- {
			lines[j-1], lines[j] = lines[j], lines[j-1]
		}
	}
	return lines, nil
}

func sameRow(a, b *ocrLine) bool {
	return math.Abs(a.r.c.y-b.r.c.y) < 0.5*min(a.r.h, b.r.h)
}

// lineTensor packs line crops into a [N 3 48 W] tensor, each resized to
// at most W wide (squeezed when wider), padded right with zeros;
// normalized to [-1, 1] in BGR order, as PaddleOCR's models were trained.
func lineTensor(crops []*image.NRGBA, w int) Tensor {
	plane := lineHeight * w
	data := make([]float32, len(crops)*3*plane)
	for k, c := range crops {
		if c.Bounds().Dx() > w {
			c = imaging.Resize(c, w, lineHeight, imaging.Linear)
		}
		cw := c.Bounds().Dx()
		base := k * 3 * plane
		for y := range lineHeight {
			row := c.Pix[y*c.Stride:]
			for x := range cw {
				p := row[4*x:]
				i := y*w + x
				data[base+i] = float32(p[2])/127.5 - 1
				data[base+plane+i] = float32(p[1])/127.5 - 1
				data[base+2*plane+i] = float32(p[0])/127.5 - 1
			}
		}
	}
	return Tensor{Shape: []int64{int64(len(crops)), 3, lineHeight, int64(w)}, Data: data}
}

// orient runs the direction classifier and turns upside-down lines over.
func (n *ocrNode) orient(ctx context.Context, m *meter, lines []*ocrLine) error {
	for i := 0; i < len(lines); i += ocrBatchSize {
		batch := lines[i:min(i+ocrBatchSize, len(lines))]
		crops := make([]*image.NRGBA, len(batch))
		for k, l := range batch {
			crops[k] = l.crop
		}
		out, err := m.run(ctx, n.clsM, lineTensor(crops, clsWidth))
		if err != nil {
			return err
		}
		p := out.Float32s()
		if len(p) != 2*len(batch) {
			return fmt.Errorf("%w: classifier output %s for %d lines", ErrRun, shapeString(out.Shape), len(batch))
		}
		for k, l := range batch {
			if p[2*k+1] > p[2*k] && p[2*k+1] >= n.clsTh {
				l.flipped = true
				rotate180(l.crop)
			}
		}
	}
	return nil
}

// recognize reads each line. Lines of about the same width are batched
// (the batch as wide as its widest line, the others padded): padding costs
// as much as text to run, so a line is never padded by more than
// recBatchSpan.
func (n *ocrNode) recognize(ctx context.Context, m *meter, lines []*ocrLine) error {
	order := make([]*ocrLine, len(lines))
	copy(order, lines)
	sort.SliceStable(order, func(i, j int) bool { return order[i].crop.Bounds().Dx() < order[j].crop.Bounds().Dx() })
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && j-i < ocrBatchSize && float64(order[j].crop.Bounds().Dx()) <= recBatchSpan*float64(order[i].crop.Bounds().Dx()) {
			j++
		}
		batch := order[i:j]
		i = j
		crops := make([]*image.NRGBA, len(batch))
		w := recMinWidth
		for k, l := range batch {
			crops[k] = l.crop
			w = max(w, l.crop.Bounds().Dx())
		}
		out, err := m.run(ctx, n.recM, lineTensor(crops, w))
		if err != nil {
			return err
		}
		if len(out.Shape) != 3 || out.Shape[0] != int64(len(batch)) || out.Shape[2] != int64(len(n.dict)+1) {
			return fmt.Errorf("%w: recognizer output %s for %d lines", ErrRun, shapeString(out.Shape), len(batch))
		}
		steps, classes := int(out.Shape[1]), int(out.Shape[2])
		p := out.Float32s()
		for k, l := range batch {
			l.text, l.conf = ctcDecode(p[k*steps*classes:(k+1)*steps*classes], steps, classes, n.dict, n.space)
		}
	}
	return nil
}

// ctcDecode is greedy CTC decoding: the best class per time step, repeats
// merged, blanks (class 0) dropped; confidence is the mean probability of
// the characters kept. PaddleOCR's Chinese recognizer, reading Latin
// script, often lets the blank win over the space between words, while
// still giving the space a probability that is otherwise nil: a space is
// inserted where it reaches spaceProb between two characters. space is
// the space's class, or -1.
func ctcDecode(p []float32, steps, classes int, dict []string, space int) (string, float64) {
	var sb strings.Builder
	prev, sum, n := -1, 0.0, 0
	lastEnd := -1 // the last step of the last character written
	for t := range steps {
		row := p[t*classes : (t+1)*classes]
		best, bp := 0, row[0]
		for c, v := range row {
			if v > bp {
				best, bp = c, v
			}
		}
		if best != 0 && best != prev {
			if space > 0 && best != space && lastEnd >= 0 && sb.Len() > 0 && !strings.HasSuffix(sb.String(), " ") {
				for u := lastEnd + 1; u < t; u++ {
					if p[u*classes+space] >= spaceProb {
						sb.WriteByte(' ')
						break
					}
				}
			}
			sb.WriteString(dict[best-1])
			sum += float64(bp)
			n++
		}
		if best != 0 {
			lastEnd = t
		}
		prev = best
	}
	if n == 0 {
		return "", 0
	}
	return sb.String(), sum / float64(n)
}

// spaceProb is the probability of a space between two characters over
// which ctcDecode writes one (measured on rendered Latin text: 0.02–0.55
// between words, under 0.001 within them).
const spaceProb = 0.01

// result builds the node's result; scale maps the decoded pixels (which
// a size hint may have made smaller) back to the image's.
func (n *ocrNode) result(lines []*ocrLine, size image.Point, scale float64) map[string]any {
	kept := lines[:0]
	flipped := 0
	for _, l := range lines {
		if n.foldWidth {
			l.text = strings.Map(halfWidth, l.text)
		}
		l.text = strings.TrimSpace(l.text)
		if l.text == "" || l.conf < n.minConf {
			continue
		}
		kept = append(kept, l)
		if l.flipped {
			flipped++
		}
	}
	rotated := 0
	if flipped*2 > len(kept) {
		// Most of the page is upside down: its reading order is ours
		// reversed.
		rotated = 180
		for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
			kept[i], kept[j] = kept[j], kept[i]
		}
	}
	out := make([]any, len(kept))
	var text strings.Builder
	conf := 0.0
	for i, l := range kept {
		cs := l.r.corners()
		if l.flipped {
			cs[0], cs[1], cs[2], cs[3] = cs[2], cs[3], cs[0], cs[1]
		}
		box := make([]any, 4)
		for k, c := range cs {
			box[k] = []any{math.Round(c.x * scale), math.Round(c.y * scale)}
		}
		out[i] = map[string]any{"text": l.text, "confidence": round3(l.conf), "box": box}
		if i > 0 {
			if sameRow(kept[i-1], l) {
				text.WriteByte(' ')
			} else {
				text.WriteByte('\n')
			}
		}
		text.WriteString(l.text)
		conf += l.conf
	}
	if len(kept) > 0 {
		conf /= float64(len(kept))
	}
	return map[string]any{
		"text": text.String(), "confidence": round3(conf), "lines": out,
		"width": size.X, "height": size.Y, "rotated": rotated,
	}
}

// halfWidth maps the full-width forms of ASCII (U+FF01–U+FF5E) and the
// ideographic space to ASCII.
func halfWidth(r rune) rune {
	switch {
	case r >= 0xFF01 && r <= 0xFF5E:
		return r - 0xFF01 + '!'
	case r == 0x3000:
		return ' '
	}
	return r
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

var (
	_ nodes.Starter = (*ocrNode)(nil)
	_ nodes.Closer  = (*ocrNode)(nil)
)
