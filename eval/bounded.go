package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/vm/runtime"
)

// DefaultMaxBytes is the default memory budget of one evaluation: what
// the built-ins that allocate in proportion to their arguments (repeat,
// join, replace, split, toJSON, string, upper, lower, base64, fromJSON,
// flatten, concat, keys, values, ...) and string concatenation with "+"
// may allocate in total, estimated before they allocate. The result of
// an expression counts too (its JSON size, when it is a list or a map).
const DefaultMaxBytes = 64 << 20

// MaxBytes is the memory budget of one evaluation, in bytes. Set it before
// evaluating (at start); it is read by every evaluation.
var MaxBytes int64 = DefaultMaxBytes

// ErrBudget is wrapped by the error of an evaluation that would allocate
// more than MaxBytes. Retrying cannot help: callers treat it as permanent.
var ErrBudget = errors.New("expression exceeded its memory budget")

// ErrStopped is wrapped, with the context's error, by the error of an
// evaluation stopped because its context ended (a step's deadline).
var ErrStopped = errors.New("expression stopped")

// stateName is the name under which an evaluation's state is in the
// variables. It holds a space, so no expression can name it: only the
// calls the compiler inserts (see bound) reach it.
const stateName = "sluice state"

// state is one evaluation's budget and context.
type state struct {
	done  <-chan struct{}
	ctx   context.Context
	left  int64
	err   error // why the evaluation stopped, first reason only
	ticks uint
}

// charge takes n bytes from the budget, failing (and remembering why)
// when it is spent, or when the context ended.
func (s *state) charge(n int64, what string) error {
	if err := s.check(); err != nil {
		return err
	}
	if n < 0 || n > s.left {
		s.err = fmt.Errorf("%w: %s needs about %s, %s left of %s", ErrBudget, what, human(n), human(s.left), human(MaxBytes))
		return s.err
	}
	s.left -= n
	return nil
}

// check fails when the evaluation's context ended.
func (s *state) check() error {
	if s.err != nil {
		return s.err
	}
	var ended bool
	if s.done == nil && s.ticks < pollTicks {
		// Short evaluations ask the context; a context whose Done
		// channel is made on demand (a run's) then never makes one.
		ended = s.ctx.Err() != nil
	} else {
		if s.done == nil {
			s.done = s.ctx.Done()
		}
		select {
		case <-s.done:
			ended = true
		default:
		}
	}
	if ended {
		s.err = fmt.Errorf("%w: %w", ErrStopped, context.Cause(s.ctx))
		return s.err
	}
	return nil
}

// pollTicks is how many predicate iterations check the context with Err
// before watching its Done channel instead (cheaper per iteration).
const pollTicks = 64

func human(n int64) string {
	switch {
	case n < 0 || n == math.MaxInt64:
		return "an unbounded amount"
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Names of the functions the compiler inserts. Like stateName they hold a
// space: expressions cannot call them.
const (
	tickName   = "step check"
	addName    = "+ (bounded)"
	chargeName = "result (bounded)"
)

func boundedName(builtinName string) string { return builtinName + " (bounded)" }

var statePtr = reflect.TypeOf((*state)(nil))

// estimators give, before a built-in runs, an upper estimate of the bytes
// it allocates, from its arguments (after the state). The built-ins named
// here are replaced by bounded versions taking the state.
var estimators = map[string]func(args []any, limit int64) int64{
	"repeat": func(a []any, limit int64) int64 {
		s, _ := a[0].(string)
		n := int64(runtime.ToInt(a[1]))
		if n <= 0 || len(s) == 0 {
			return 0
		}
		if int64(len(s)) > limit/n {
			return math.MaxInt64
		}
		return int64(len(s)) * n
	},
	"join": func(a []any, limit int64) int64 {
		glue := ""
		if len(a) == 2 {
			glue, _ = a[1].(string)
		}
		var n, total int64
		switch xs := a[0].(type) {
		case []string:
			n = int64(len(xs))
			for _, x := range xs {
				total += int64(len(x))
			}
		case []any:
			n = int64(len(xs))
			for _, x := range xs {
				s, _ := x.(string)
				total += int64(len(s))
			}
		}
		if n > 0 && int64(len(glue)) > (limit-total)/n {
			return math.MaxInt64
		}
		return total + n*int64(len(glue)) + 16*n
	},
	"replace": func(a []any, limit int64) int64 {
		s, _ := a[0].(string)
		old, _ := a[1].(string)
		nw, _ := a[2].(string)
		var n int64
		if old == "" {
			n = int64(utf8.RuneCountInString(s)) + 1
		} else {
			n = int64(strings.Count(s, old))
		}
		if n > 0 && int64(len(nw)) > limit/n {
			return math.MaxInt64
		}
		return int64(len(s)) + n*int64(len(nw))
	},
	"split":      splitCost,
	"splitAfter": splitCost,
	"upper":      func(a []any, _ int64) int64 { return 2 * strLen(a[0]) },
	"lower":      func(a []any, _ int64) int64 { return 2 * strLen(a[0]) },
	"toBase64":   func(a []any, _ int64) int64 { return 2 * strLen(a[0]) },
	"fromBase64": func(a []any, _ int64) int64 { return strLen(a[0]) },
	"fromJSON":   func(a []any, _ int64) int64 { return 16 * strLen(a[0]) },
	"toJSON":     func(a []any, limit int64) int64 { return jsonSize(a[0], limit) },
	"string":     func(a []any, limit int64) int64 { return jsonSize(a[0], limit) },
	"flatten": func(a []any, limit int64) int64 {
		var n int64
		var count func(v any, depth int) bool
		count = func(v any, depth int) bool {
			xs, ok := v.([]any)
			if !ok || depth > builtin.MaxDepth {
				n += 16
				return n <= limit
			}
			for _, x := range xs {
				if !count(x, depth+1) {
					return false
				}
			}
			return true
		}
		if !count(a[0], 0) {
			return math.MaxInt64
		}
		return n
	},
}

// charged are built-ins whose result is at most a small multiple of their
// arguments, already in memory: their result is charged after the call.
var charged = map[string]bool{
	"concat": true, "keys": true, "values": true, "toPairs": true, "fromPairs": true,
	"uniq": true, "reverse": true, "sort": true, "take": true,
}

func strLen(v any) int64 {
	s, _ := v.(string)
	return int64(len(s))
}

func splitCost(a []any, _ int64) int64 {
	s, _ := a[0].(string)
	sep, _ := a[1].(string)
	if sep == "" {
		return 16 * (int64(utf8.RuneCountInString(s)) + 1)
	}
	return 16 * (int64(strings.Count(s, sep)) + 1)
}

// jsonSize estimates the bytes of v written as indented JSON or with fmt,
// stopping (returning MaxInt64) once over limit.
func jsonSize(v any, limit int64) int64 {
	var n int64
	var walk func(v any, depth int) bool
	walk = func(v any, depth int) bool {
		if depth > builtin.MaxDepth {
			return false
		}
		pad := int64(2*depth + 2)
		switch x := v.(type) {
		case string:
			n += int64(len(x)) + 2
		case []any:
			n += 2
			for _, e := range x {
				n += pad
				if !walk(e, depth+1) {
					return false
				}
			}
		case map[string]any:
			n += 2
			for k, e := range x {
				n += pad + int64(len(k)) + 4
				if !walk(e, depth+1) {
					return false
				}
			}
		case []string:
			for _, e := range x {
				n += pad + int64(len(e)) + 2
			}
		case nil, bool, int, int64, float64, time.Time, time.Duration:
			n += 24
		default:
			rv := reflect.ValueOf(v)
			switch rv.Kind() {
			case reflect.Slice, reflect.Array:
				for i := range rv.Len() {
					n += pad
					if !walk(rv.Index(i).Interface(), depth+1) {
						return false
					}
				}
			case reflect.Map:
				it := rv.MapRange()
				for it.Next() {
					n += pad + 8
					if !walk(it.Key().Interface(), depth+1) || !walk(it.Value().Interface(), depth+1) {
						return false
					}
				}
			case reflect.Ptr, reflect.Interface:
				if !rv.IsNil() {
					return walk(rv.Elem().Interface(), depth)
				}
				n += 4
			default:
				n += 24
			}
		}
		return n <= limit
	}
	if !walk(v, 0) {
		return math.MaxInt64
	}
	return n
}

// boundedFunctions are the expr options declaring the functions the
// bound patcher calls.
func boundedFunctions() []expr.Option {
	opts := []expr.Option{
		expr.Function(tickName, func(p ...any) (any, error) {
			if err := p[0].(*state).tick(); err != nil {
				return nil, err
			}
			return p[1], nil
		}),
		expr.Function(addName, func(p ...any) (any, error) {
			s := p[0].(*state)
			a, b := p[1], p[2]
			as, aok := a.(string)
			bs, bok := b.(string)
			if aok && bok {
				if err := s.charge(int64(len(as))+int64(len(bs)), `"+" of two strings`); err != nil {
					return nil, err
				}
				return as + bs, nil
			}
			return runtime.Add(a, b), nil
		}),
		expr.Function(chargeName, func(p ...any) (any, error) {
			s := p[0].(*state)
			n := int64(16)
			if rv := reflect.ValueOf(p[1]); rv.Kind() == reflect.Slice || rv.Kind() == reflect.Map {
				n += 16 * int64(rv.Len())
			}
			if err := s.charge(n, "a built-in's result"); err != nil {
				return nil, err
			}
			return p[1], nil
		}),
	}
	for name, est := range estimators {
		b := builtin.Builtins[builtin.Index[name]]
		call := builtinCall(b)
		fn := func(p ...any) (any, error) {
			s := p[0].(*state)
			args := p[1:]
			if err := s.charge(est(args, s.left), name+"()"); err != nil {
				return nil, err
			}
			return call(args)
		}
		var types []any
		for _, t := range b.Types {
			in := []reflect.Type{statePtr}
			for i := range t.NumIn() {
				in = append(in, t.In(i))
			}
			out := []reflect.Type{}
			for i := range t.NumOut() {
				out = append(out, t.Out(i))
			}
			types = append(types, reflect.New(reflect.FuncOf(in, out, t.IsVariadic())).Interface())
		}
		opts = append(opts, expr.Function(boundedName(name), fn, types...))
	}
	return opts
}

// builtinCall calls a built-in by whichever implementation it has.
func builtinCall(b *builtin.Function) func(args []any) (any, error) {
	switch {
	case b.Fast != nil:
		return func(args []any) (any, error) { return b.Fast(args[0]), nil }
	case b.Safe != nil:
		return func(args []any) (any, error) {
			out, _, err := b.Safe(args...)
			return out, err
		}
	default:
		return func(args []any) (any, error) { return b.Func(args...) }
	}
}

// tick is called once per iteration of every predicate (map, filter,
// reduce, ...): it stops the evaluation when its context ended.
func (s *state) tick() error {
	s.ticks++
	return s.check()
}

// bound is the patcher that makes programs stoppable and bounded:
// predicate bodies call tick, the allocating built-ins are replaced by
// bounded versions, "+" of values that may be strings charges the budget.
type bound struct{}

func stateIdent() ast.Node { return &ast.IdentifierNode{Value: stateName} }

// Visit implements ast.Visitor.
func (bound) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.PredicateNode:
		n.Node = &ast.CallNode{Callee: &ast.IdentifierNode{Value: tickName}, Arguments: []ast.Node{stateIdent(), n.Node}}
	case *ast.BuiltinNode:
		if _, ok := estimators[n.Name]; ok {
			ast.Patch(node, &ast.CallNode{
				Callee:    &ast.IdentifierNode{Value: boundedName(n.Name)},
				Arguments: append([]ast.Node{stateIdent()}, n.Arguments...),
			})
		} else if charged[n.Name] {
			ast.Patch(node, &ast.CallNode{
				Callee:    &ast.IdentifierNode{Value: chargeName},
				Arguments: []ast.Node{stateIdent(), n},
			})
		}
	case *ast.BinaryNode:
		if n.Operator != "+" {
			return
		}
		if t := n.Type(); t != nil && t.Kind() != reflect.String && t.Kind() != reflect.Interface {
			return // numbers, durations, dates: nothing grows
		}
		ast.Patch(node, &ast.CallNode{
			Callee:    &ast.IdentifierNode{Value: addName},
			Arguments: []ast.Node{stateIdent(), n.Left, n.Right},
		})
	}
}

// resultCost is what a result costs against the budget: the JSON size of
// lists and maps (which a step may encode), nothing for scalars.
func resultCost(v any, limit int64) int64 {
	switch v.(type) {
	case []any, map[string]any:
		return jsonSize(v, limit)
	}
	return 0
}
