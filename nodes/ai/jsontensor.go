package ai

import (
	"fmt"
	"math"
)

// fromJSON builds a tensor of element type typ from nested JSON arrays of
// numbers (or booleans, for bool), checking that they are regular (every
// row as long as its siblings) and hold at most maxElems numbers.
func fromJSON(v any, typ string, maxElems int64) (Tensor, error) {
	var shape []int64
	for x := v; ; {
		a, ok := x.([]any)
		if !ok {
			break
		}
		shape = append(shape, int64(len(a)))
		if len(a) == 0 {
			break
		}
		x = a[0]
	}
	n := elements(shape)
	if n > maxElems {
		return Tensor{}, fmt.Errorf("%s holds %d numbers, over the limit of %d", shapeString(shape), n, maxElems)
	}
	flat := make([]float64, 0, n)
	var walk func(x any, depth int, path string) error
	walk = func(x any, depth int, path string) error {
		if depth == len(shape) {
			switch f := x.(type) {
			case float64:
				flat = append(flat, f)
			case int:
				flat = append(flat, float64(f))
			case int64:
				flat = append(flat, float64(f))
			case bool:
				if typ != Bool {
					return fmt.Errorf("%s is a boolean, the model wants %s", path, typ)
				}
				flat = append(flat, map[bool]float64{false: 0, true: 1}[f])
			default:
				return fmt.Errorf("%s is %s, not a number", path, describeJSON(x))
			}
			return nil
		}
		a, ok := x.([]any)
		if !ok || int64(len(a)) != shape[depth] {
			return fmt.Errorf("%s is %s, not a list of %d like its siblings: the array is not rectangular", path, describeJSON(x), shape[depth])
		}
		for i, e := range a {
			if err := walk(e, depth+1, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(v, 0, "value"); err != nil {
		return Tensor{}, err
	}
	t := Tensor{Shape: shape}
	switch typ {
	case Float32:
		d := make([]float32, len(flat))
		for i, f := range flat {
			d[i] = float32(f)
		}
		t.Data = d
	case Float64:
		t.Data = flat
	case Int64, Int32, Int8, Uint8:
		b := map[string][2]float64{Int64: {-(1 << 63), 1<<63 - 1}, Int32: {math.MinInt32, math.MaxInt32}, Int8: {-128, 127}, Uint8: {0, 255}}[typ]
		for i, f := range flat {
			if f != math.Trunc(f) || f < b[0] || f > b[1] {
				return Tensor{}, fmt.Errorf("element %d (%v) is not an %s", i, f, typ)
			}
		}
		switch typ {
		case Int64:
			d := make([]int64, len(flat))
			for i, f := range flat {
				d[i] = int64(f)
			}
			t.Data = d
		case Int32:
			d := make([]int32, len(flat))
			for i, f := range flat {
				d[i] = int32(f)
			}
			t.Data = d
		case Int8:
			d := make([]int8, len(flat))
			for i, f := range flat {
				d[i] = int8(f)
			}
			t.Data = d
		case Uint8:
			d := make([]uint8, len(flat))
			for i, f := range flat {
				d[i] = uint8(f)
			}
			t.Data = d
		}
	case Bool:
		d := make([]bool, len(flat))
		for i, f := range flat {
			d[i] = f != 0
		}
		t.Data = d
	default:
		return Tensor{}, fmt.Errorf("the model wants %s elements, which Sluice does not build from JSON", typ)
	}
	return t, nil
}

func describeJSON(x any) string {
	switch v := x.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", v)
	case map[string]any:
		return "an object"
	case []any:
		return fmt.Sprintf("a list of %d", len(v))
	}
	return fmt.Sprintf("%v", x)
}

// toJSON turns a tensor into nested lists of numbers (a number for rank 0).
func toJSON(t Tensor) any {
	flat := floats(t)
	if len(t.Shape) == 0 {
		if len(flat) == 0 {
			return nil
		}
		return flat[0]
	}
	var build func(depth int, off int64) (any, int64)
	build = func(depth int, off int64) (any, int64) {
		n := t.Shape[depth]
		out := make([]any, n)
		for i := range out {
			if depth == len(t.Shape)-1 {
				out[i] = flat[off]
				off++
				continue
			}
			out[i], off = build(depth+1, off)
		}
		return out, off
	}
	v, _ := build(0, 0)
	return v
}

// floats returns a tensor's elements as float64 (JSON numbers).
func floats(t Tensor) []float64 {
	switch d := t.Data.(type) {
	case []float64:
		return d
	case []float32:
		return conv(d)
	case []int64:
		return conv(d)
	case []int32:
		return conv(d)
	case []int8:
		return conv(d)
	case []uint8:
		return conv(d)
	case []bool:
		out := make([]float64, len(d))
		for i, b := range d {
			if b {
				out[i] = 1
			}
		}
		return out
	}
	return nil
}

func conv[T float32 | int64 | int32 | int8 | uint8](d []T) []float64 {
	out := make([]float64, len(d))
	for i, x := range d {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			f = 0 // JSON has no NaN
		}
		out[i] = f
	}
	return out
}
