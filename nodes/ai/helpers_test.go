package ai_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sluicehq/sluice/nodes/ai"
)

// needRuntime loads ONNX Runtime or skips the test (fails it under CI).
func needRuntime(t testing.TB) {
	t.Helper()
	if err := ai.Load(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ONNX Runtime is required under CI: %v", err)
		}
		t.Skipf("no ONNX Runtime (./scripts/models.sh): %v", err)
	}
}

// ocrModels returns the folder of the PaddleOCR models, or skips the test
// (fails it under CI).
func ocrModels(t testing.TB) string {
	t.Helper()
	needRuntime(t)
	dir, _ := ai.Dir("")
	p := filepath.Join(dir, "ppocr")
	for _, f := range []string{"det.onnx", "cls.onnx", "rec.onnx", "keys.txt"} {
		if _, err := os.Stat(filepath.Join(p, f)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("OCR models are required under CI: %v", err)
			}
			t.Skipf("no OCR models (./scripts/models.sh): %v", err)
		}
	}
	return p
}

// ONNX protobuf, written by hand for tiny test models (field numbers from
// onnx/onnx.proto).
const (
	elemFloat  = 1
	elemInt64  = 7
	elemDouble = 11
)

type dim struct {
	value int64
	param string // a named dynamic dimension
}

func msg(fields ...[]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

func fBytes(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func fString(num protowire.Number, s string) []byte { return fBytes(num, []byte(s)) }

func fInt(num protowire.Number, v int64) []byte {
	b := protowire.AppendTag(nil, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

// valueInfo is a ValueInfoProto of a tensor.
func valueInfo(name string, elem int64, dims ...dim) []byte {
	var shape []byte
	for _, d := range dims {
		if d.param != "" {
			shape = append(shape, fBytes(1, fString(2, d.param))...)
		} else {
			shape = append(shape, fBytes(1, fInt(1, d.value))...)
		}
	}
	tensor := msg(fInt(1, elem), fBytes(2, shape))
	return msg(fString(1, name), fBytes(2, fBytes(1, tensor)))
}

// node is a NodeProto; attrs are int attributes.
func node(op string, in, out []string, attrs map[string]int64) []byte {
	var b []byte
	for _, i := range in {
		b = append(b, fString(1, i)...)
	}
	for _, o := range out {
		b = append(b, fString(2, o)...)
	}
	b = append(b, fString(4, op)...)
	for k, v := range attrs {
		b = append(b, fBytes(5, msg(fString(1, k), fInt(3, v), fInt(20, 2)))...)
	}
	return b
}

// model is a ModelProto (IR 8, opset 13) of one graph.
func model(nodes [][]byte, inputs, outputs [][]byte) []byte {
	var g []byte
	for _, n := range nodes {
		g = append(g, fBytes(1, n)...)
	}
	g = append(g, fString(2, "test")...)
	for _, i := range inputs {
		g = append(g, fBytes(11, i)...)
	}
	for _, o := range outputs {
		g = append(g, fBytes(12, o)...)
	}
	return msg(fInt(1, 8), fString(2, "sluice-test"), fBytes(7, g), fBytes(8, msg(fString(1, ""), fInt(2, 13))))
}

// addSoftmax is a model: sum = a + b, probs = softmax(sum) over the last
// axis, for a and b float32 [N, 3]; ids (int64 [2]) passes through.
func addSoftmax() []byte {
	return model(
		[][]byte{
			node("Add", []string{"a", "b"}, []string{"sum"}, nil),
			node("Softmax", []string{"sum"}, []string{"probs"}, map[string]int64{"axis": -1}),
			node("Identity", []string{"ids"}, []string{"ids_out"}, nil),
		},
		[][]byte{valueInfo("a", elemFloat, dim{param: "N"}, dim{value: 3}), valueInfo("b", elemFloat, dim{param: "N"}, dim{value: 3}), valueInfo("ids", elemInt64, dim{value: 2})},
		[][]byte{valueInfo("sum", elemFloat, dim{param: "N"}, dim{value: 3}), valueInfo("probs", elemFloat, dim{param: "N"}, dim{value: 3}), valueInfo("ids_out", elemInt64, dim{value: 2})},
	)
}

// writeModel writes a model into a temporary folder and returns its path.
func writeModel(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}
