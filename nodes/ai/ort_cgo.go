//go:build cgo && !purego

package ai

import (
	"context"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"
)

// cgoRuntime says the runtime binding is built in.
const cgoRuntime = true

func ortLoad(path string) error {
	ort.SetSharedLibraryPath(path)
	return ort.InitializeEnvironment(ort.WithLogLevelError())
}

func ortInspect(data []byte) (in, out []Info, err error) {
	i, o, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, nil, fmt.Errorf("not a model ONNX Runtime can load: %w", err)
	}
	conv := func(xs []ort.InputOutputInfo) []Info {
		out := make([]Info, len(xs))
		for k, x := range xs {
			out[k] = Info{Name: x.Name, Type: typeName(x), Shape: append([]int64(nil), x.Dimensions...)}
		}
		return out
	}
	return conv(i), conv(o), nil
}

func typeName(x ort.InputOutputInfo) string {
	switch x.OrtValueType {
	case ort.ONNXTypeTensor:
	case ort.ONNXTypeSequence:
		return "sequence"
	case ort.ONNXTypeMap:
		return "map"
	default:
		return x.OrtValueType.String()
	}
	switch x.DataType {
	case ort.TensorElementDataTypeFloat:
		return Float32
	case ort.TensorElementDataTypeDouble:
		return Float64
	case ort.TensorElementDataTypeInt64:
		return Int64
	case ort.TensorElementDataTypeInt32:
		return Int32
	case ort.TensorElementDataTypeInt8:
		return Int8
	case ort.TensorElementDataTypeUint8:
		return Uint8
	case ort.TensorElementDataTypeBool:
		return Bool
	}
	return x.DataType.String()
}

type ortSess struct {
	s    *ort.DynamicAdvancedSession
	opts *ort.RunOptions
	outs int
}

func ortSession(data []byte, in, out []string, threads int) (session, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	for _, err := range []error{
		so.SetIntraOpNumThreads(threads),
		so.SetInterOpNumThreads(1),
		so.SetExecutionMode(ort.ExecutionModeSequential),
		// Idle threads sleep rather than spin: Sluice shares its cores
		// with the rest of the flow.
		so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"),
		// A failed run returns its reason, which the node reports; the
		// runtime need not print it too.
		so.SetLogSeverityLevel(ort.LoggingLevelFatal),
	} {
		if err != nil {
			return nil, err
		}
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, in, out, so)
	if err != nil {
		return nil, err
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		s.Destroy()
		return nil, err
	}
	return &ortSess{s: s, opts: ro, outs: len(out)}, nil
}

func newValue(t Tensor) (ort.Value, error) {
	sh := ort.Shape(t.Shape)
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewTensor(sh, d)
	case []float64:
		return ort.NewTensor(sh, d)
	case []int64:
		return ort.NewTensor(sh, d)
	case []int32:
		return ort.NewTensor(sh, d)
	case []int8:
		return ort.NewTensor(sh, d)
	case []uint8:
		return ort.NewTensor(sh, d)
	case []bool:
		return ort.NewTensor(sh, d)
	}
	return nil, fmt.Errorf("unsupported tensor data %T", t.Data)
}

func goTensor(v ort.Value) (Tensor, error) {
	t := Tensor{Shape: append([]int64(nil), v.GetShape()...)}
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		t.Data = x.GetData()
	case *ort.Tensor[float64]:
		t.Data = x.GetData()
	case *ort.Tensor[int64]:
		t.Data = x.GetData()
	case *ort.Tensor[int32]:
		t.Data = x.GetData()
	case *ort.Tensor[int8]:
		t.Data = x.GetData()
	case *ort.Tensor[uint8]:
		t.Data = x.GetData()
	case *ort.Tensor[bool]:
		t.Data = x.GetData()
	default:
		return Tensor{}, fmt.Errorf("output of type %s is not supported", v.GetONNXType())
	}
	return t, nil
}

func (s *ortSess) run(ctx context.Context, in []Tensor) (_ []Tensor, err error) {
	vals := make([]ort.Value, len(in))
	defer func() {
		for _, v := range vals {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range in {
		if vals[i], err = newValue(t); err != nil {
			return nil, err
		}
	}
	outs := make([]ort.Value, s.outs) // nil: allocated by the runtime
	defer func() {
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	// A cancelled context terminates the run; the flag is cleared for the
	// session's next call once the callback has finished.
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		s.opts.Terminate()
		close(terminated)
	})
	err = s.s.RunWithOptions(vals, outs, s.opts)
	if !stop() {
		<-terminated
		s.opts.UnsetTerminate()
	}
	if err != nil {
		return nil, err
	}
	res := make([]Tensor, len(outs))
	for i, v := range outs {
		if res[i], err = goTensor(v); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (s *ortSess) close() error {
	s.opts.Destroy()
	return s.s.Destroy()
}
