package ai

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Element types of tensors, as ONNX names them in messages.
const (
	Float32 = "float32"
	Float64 = "float64"
	Int64   = "int64"
	Int32   = "int32"
	Int8    = "int8"
	Uint8   = "uint8"
	Bool    = "bool"
)

// Info describes a model input or output. Type is an element type above,
// another ONNX type name for tensors Sluice does not convert, or the kind
// of a non-tensor value ("sequence", "map"). A dimension of -1 is dynamic.
type Info struct {
	Name  string
	Type  string
	Shape []int64
}

func (i Info) String() string { return fmt.Sprintf("%q %s%s", i.Name, i.Type, shapeString(i.Shape)) }

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Tensor is a dense tensor in Go memory: Data is a []float32, []float64,
// []int64, []int32, []int8, []uint8 or []bool of the shape's size.
type Tensor struct {
	Shape []int64
	Data  any
}

// Type returns the tensor's element type.
func (t Tensor) Type() string {
	switch t.Data.(type) {
	case []float32:
		return Float32
	case []float64:
		return Float64
	case []int64:
		return Int64
	case []int32:
		return Int32
	case []int8:
		return Int8
	case []uint8:
		return Uint8
	case []bool:
		return Bool
	}
	return fmt.Sprintf("%T", t.Data)
}

// Len returns the number of elements the shape holds.
func (t Tensor) Len() int64 { return elements(t.Shape) }

func elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// Bytes returns the size of the tensor's data.
func (t Tensor) Bytes() int64 {
	switch t.Data.(type) {
	case []float64, []int64:
		return 8 * t.Len()
	case []float32, []int32:
		return 4 * t.Len()
	}
	return t.Len()
}

// Float32s returns the data of a float32 tensor, or nil.
func (t Tensor) Float32s() []float32 { f, _ := t.Data.([]float32); return f }

// Options size a model's session pool.
type Options struct {
	// Sessions is how many calls run at once (the pool's size); 0 means
	// GOMAXPROCS.
	Sessions int
	// Threads is each session's intra-op thread count; 0 means 1.
	Threads int
}

// ErrShape is wrapped by errors about inputs that do not fit the model.
var ErrShape = errors.New("input does not fit the model")

// ErrRun is wrapped by errors the runtime returned for a run that was not
// cancelled: given the same model and inputs it fails the same way (a
// shape the graph rejects, a kernel error), so the nodes report it as
// permanent.
var ErrRun = errors.New("model run failed")

// Model is a loaded ONNX model with a pool of sessions. Run is safe for
// concurrent use: at most as many calls as the pool has sessions run at
// once, the others wait for a session. Nodes that open the same model
// (same bytes, same threads) share one pool, grown to the largest
// Options.Sessions asked: a process holds each model's weights and
// working memory once per session, not once per node. Close releases the
// sessions with the last user, once no call is running.
type Model struct {
	Name            string
	Inputs, Outputs []Info

	p      *pool
	closed bool
}

// pool is the sessions of one model, shared by the Models opened on it.
type pool struct {
	key     poolKey
	ch      chan session
	all     []session
	threads int
	refs    int
}

type poolKey struct {
	sum     [sha256.Size]byte
	threads int
}

// maxSessions bounds a pool (the sessions field's maximum).
const maxSessions = 256

var (
	poolsMu sync.Mutex
	pools   = map[poolKey]*pool{}
)

// session is one runtime session (package ort in cgo builds).
type session interface {
	run(ctx context.Context, in []Tensor) ([]Tensor, error)
	close() error
}

// Inspect returns a model's inputs and outputs. ONNX Runtime must be
// loaded (Load).
func Inspect(data []byte) (in, out []Info, err error) {
	if Loaded() == "" {
		return nil, nil, ErrNoRuntime
	}
	return ortInspect(data)
}

// Open loads a model from its bytes into a pool of sessions, or joins the
// pool of the same model opened before. name labels metrics, meters and
// messages.
func Open(name string, data []byte, o Options) (*Model, error) {
	if Loaded() == "" {
		return nil, ErrNoRuntime
	}
	in, out, err := ortInspect(data)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	if o.Sessions <= 0 {
		o.Sessions = runtime.GOMAXPROCS(0)
	}
	o.Sessions = min(o.Sessions, maxSessions)
	if o.Threads <= 0 {
		o.Threads = 1
	}
	key := poolKey{sum: sha256.Sum256(data), threads: o.Threads}
	poolsMu.Lock()
	defer poolsMu.Unlock()
	p := pools[key]
	if p == nil {
		p = &pool{key: key, ch: make(chan session, maxSessions), threads: o.Threads}
	}
	names := func(is []Info) []string {
		s := make([]string, len(is))
		for i, x := range is {
			s[i] = x.Name
		}
		return s
	}
	for len(p.all) < o.Sessions {
		s, err := ortSession(data, names(in), names(out), o.Threads)
		if err != nil {
			if p.refs == 0 {
				err = errors.Join(err, p.drain())
			}
			return nil, fmt.Errorf("model %s: new session: %w", name, err)
		}
		p.all = append(p.all, s)
		p.ch <- s
	}
	p.refs++
	pools[key] = p
	return &Model{Name: name, Inputs: in, Outputs: out, p: p}, nil
}

// Run runs the model on inputs given in the order of m.Inputs and returns
// every output in the order of m.Outputs, with the time the runtime took
// (waiting for a session excluded). It checks element types and ranks and
// fixed dimensions first (errors wrapping ErrShape), and stops the run
// when ctx ends.
func (m *Model) Run(ctx context.Context, in []Tensor) ([]Tensor, time.Duration, error) {
	if err := m.check(in); err != nil {
		return nil, 0, err
	}
	var s session
	select {
	case s = <-m.p.ch:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { m.p.ch <- s }()
	if err := ctx.Err(); err != nil { // the select may have picked the session
		return nil, 0, err
	}
	start := time.Now()
	out, err := s.run(ctx, in)
	d := time.Since(start)
	observe(m.Name, d, err)
	if err != nil {
		if ctx.Err() != nil {
			return nil, d, fmt.Errorf("model %s: %w", m.Name, ctx.Err())
		}
		return nil, d, fmt.Errorf("model %s: %w: %w", m.Name, ErrRun, err)
	}
	return out, d, nil
}

func (m *Model) check(in []Tensor) error {
	if len(in) != len(m.Inputs) {
		return fmt.Errorf("%w: model %s takes %d inputs, given %d", ErrShape, m.Name, len(m.Inputs), len(in))
	}
	for i, want := range m.Inputs {
		if err := fits(want, in[i]); err != nil {
			return fmt.Errorf("%w: model %s: %v", ErrShape, m.Name, err)
		}
	}
	return nil
}

// fits checks a tensor against a model input.
func fits(want Info, t Tensor) error {
	if t.Type() != want.Type {
		return fmt.Errorf("input %q wants %s, given %s", want.Name, want.Type, t.Type())
	}
	if len(t.Shape) != len(want.Shape) {
		return fmt.Errorf("input %q wants shape %s (rank %d), given %s", want.Name, shapeString(want.Shape), len(want.Shape), shapeString(t.Shape))
	}
	for i, d := range want.Shape {
		if t.Shape[i] <= 0 || d >= 0 && t.Shape[i] != d {
			return fmt.Errorf("input %q wants shape %s, given %s", want.Name, shapeString(want.Shape), shapeString(t.Shape))
		}
	}
	if n := t.Len(); int64(dataLen(t.Data)) != n {
		return fmt.Errorf("input %q: shape %s holds %d elements, given %d", want.Name, shapeString(t.Shape), n, dataLen(t.Data))
	}
	return nil
}

func dataLen(d any) int {
	switch v := d.(type) {
	case []float32:
		return len(v)
	case []float64:
		return len(v)
	case []int64:
		return len(v)
	case []int32:
		return len(v)
	case []int8:
		return len(v)
	case []uint8:
		return len(v)
	case []bool:
		return len(v)
	}
	return -1
}

// Close leaves the model's pool; the last user releases its sessions,
// waiting for calls in flight. Closing twice, or a nil Model, does nothing.
func (m *Model) Close() error {
	if m == nil || m.closed {
		return nil
	}
	m.closed = true
	poolsMu.Lock()
	defer poolsMu.Unlock()
	m.p.refs--
	if m.p.refs > 0 {
		return nil
	}
	delete(pools, m.p.key)
	return m.p.drain()
}

// drain closes every session once it is back in the pool.
func (p *pool) drain() error {
	var errs []error
	for range p.all {
		errs = append(errs, (<-p.ch).close())
	}
	p.all = nil
	return errors.Join(errs...)
}

// Input returns the input named name.
func (m *Model) Input(name string) (Info, int, bool) { return find(m.Inputs, name) }

// Output returns the output named name.
func (m *Model) Output(name string) (Info, int, bool) { return find(m.Outputs, name) }

func find(is []Info, name string) (Info, int, bool) {
	for i, x := range is {
		if x.Name == name {
			return x, i, true
		}
	}
	return Info{}, -1, false
}

func names(is []Info) string {
	s := make([]string, len(is))
	for i, x := range is {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}
