// Package eval compiles the expressions and string templates of flow
// files, once, at validate time (github.com/expr-lang/expr), and runs them
// per message against a message's variables.
//
// Variables an expression can name:
//
//	payload  the message's JSON payload (any JSON value)
//	meta     the message's metadata (map of strings)
//	object   the object reference of a bucket event or loaded object:
//	         bucket, key, size, etag, content_type (nil when there is none)
//	event    the trigger's event: name, time, topic, id
//	steps    results of earlier steps, by step id (steps.save.key)
//	flow     the flow's name
//	run      the run's id
//	batch    the batch being written by a batching node (archive):
//	         partition, offset and id of its first message, topic,
//	         time (when the broker stored that message), date
//	         ("2006-01-02"), hour ("15"), minute ("04"), ext (the
//	         format's file extension, such as ".ndjson.gz")
//
// Functions beside expr's built-ins: base(path), dir(path), ext(path),
// stem(path) (base without extension), and env(name) for the process
// environment.
//
// Evaluations are bounded. The built-ins that allocate in proportion to
// an argument (repeat, join, replace, split, toJSON, string, ...) and "+"
// of strings are charged, before they allocate, against a memory budget
// per evaluation (MaxBytes, 64 MiB by default): over it the evaluation
// fails with ErrBudget, a permanent error, instead of exhausting the
// process's memory. Predicates (map, filter, reduce, ...) check the
// evaluation's context on every iteration, so EvalContext, BoolContext and
// RenderContext stop at a step's deadline with an error wrapping
// ErrStopped and the context's error. expr's own limit on the elements
// an evaluation allocates (a million) stays on.
//
// In templates a part that is nil (a missing field) is an error naming
// the part: "r/{{ payload.user }}.json" must not quietly become "r/.json".
// A default is given with expr's ?? operator: {{ payload.user ?? "anon" }}.
package eval

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Vars are the variables of one evaluation. Programs are compiled against
// this type: an unknown name is a compile error (a typo caught by `sluice
// validate`), while the variables' members are dynamic.
type Vars struct {
	Payload any `expr:"payload"`
	Meta    any `expr:"meta"`
	Object  any `expr:"object"`
	Event   any `expr:"event"`
	Steps   any `expr:"steps"`
	Flow    any `expr:"flow"`
	Run     any `expr:"run"`
	// Request is set for HTTP-triggered runs: method, path, params, query,
	// headers (the allowed ones).
	Request any `expr:"request"`
	// Batch is set when a batching node names what it writes.
	Batch any `expr:"batch"`

	// State is the evaluation's budget and context, set by EvalContext;
	// expressions cannot name it.
	State *state `expr:"sluice state"`
}

var boundedOptions = boundedFunctions()

var functions = []expr.Option{
	expr.Function("base", strFn(path.Base), new(func(string) string)),
	expr.Function("dir", strFn(path.Dir), new(func(string) string)),
	expr.Function("ext", strFn(path.Ext), new(func(string) string)),
	expr.Function("stem", strFn(func(p string) string {
		b := path.Base(p)
		return strings.TrimSuffix(b, path.Ext(b))
	}), new(func(string) string)),
	expr.Function("env", strFn(os.Getenv), new(func(string) string)),
}

func strFn(f func(string) string) func(params ...any) (any, error) {
	return func(params ...any) (any, error) {
		s, ok := params[0].(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %T", params[0])
		}
		return f(s), nil
	}
}

// Program is a compiled expression. It is safe for concurrent use.
type Program struct {
	src  string
	prog *vm.Program
	// lazy says which Lazy variables the expression names (or all of
	// them, when it names $env).
	event, object bool
}

// Lazy is a variable whose value is computed only when an expression
// names it: Vars.Event and Vars.Object may hold one. Building a map per
// message costs allocations most expressions never need.
type Lazy interface{ Value() any }

// names records which Lazy variables a program names.
type names struct{ event, object *bool }

// Visit implements ast.Visitor.
func (n names) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok {
		switch id.Value {
		case "event":
			*n.event = true
		case "object":
			*n.object = true
		case "$env":
			*n.event, *n.object = true, true
		}
	}
}

// resolve is a variable as a program sees it: a Lazy one computed when
// the program names it (nil otherwise, never read then).
func resolve(v any, named bool) any {
	if l, ok := v.(Lazy); ok {
		if named {
			return l.Value()
		}
		return nil
	}
	return v
}

// Error is a compile or run error with its place inside the source:
// Line is 1-based, Column 0-based, both counted in the expression text.
type Error struct {
	Line, Column int
	Msg          string
	// Err is the cause a run error wraps (ErrBudget, ErrStopped), if any.
	Err error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Compile compiles an expression; asBool makes a non-boolean result a
// compile error where the type is known.
func Compile(src string, asBool bool) (*Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Line: 1, Msg: "empty expression"}
	}
	opts := append([]expr.Option{expr.Env(Vars{})}, functions...)
	opts = append(opts, boundedOptions...)
	opts = append(opts, expr.Patch(bound{}))
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	p, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, toError(err)
	}
	prog := &Program{src: src, prog: p}
	root := p.Node()
	ast.Walk(&root, names{&prog.event, &prog.object})
	return prog, nil
}

func toError(err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return &Error{Line: max(fe.Line, 1), Column: fe.Column, Msg: fe.Message}
	}
	return &Error{Line: 1, Msg: err.Error()}
}

// Source returns the expression text.
func (p *Program) Source() string { return p.src }

// Eval runs the program without a deadline: EvalContext with
// context.Background().
func (p *Program) Eval(v Vars) (any, error) { return p.EvalContext(context.Background(), v) }

// EvalContext runs the program within its memory budget, stopping when
// ctx ends. Errors name the expression; they wrap ErrBudget when the
// budget was spent (permanent) and ErrStopped with ctx's error when ctx
// ended first. ctx is asked where the work can grow (predicates, the
// allocating built-ins, string "+", a list or map result): an evaluation
// that finished with a scalar result returns it, even if ctx ended
// meanwhile (the step's deadline is still checked when the step returns).
func (p *Program) EvalContext(ctx context.Context, v Vars) (any, error) {
	ev := evaluations.Get().(*evaluation)
	defer ev.release()
	st := &ev.st
	*st = state{ctx: ctx, left: MaxBytes}
	ev.vars = v
	ev.vars.State = st
	ev.vars.Event, ev.vars.Object = resolve(v.Event, p.event), resolve(v.Object, p.object)
	out, err := ev.vm.Run(p.prog, &ev.vars)
	if err == nil && st.err == nil {
		// A list or a map counts against the budget; a scalar costs
		// nothing, and the evaluation is over: its context is not asked
		// again (a run's costs a clock reading).
		if n := resultCost(out, st.left); n > 0 {
			err = st.charge(n, "the result")
		}
	}
	if err != nil {
		ee := toError(err).(*Error)
		if st.err != nil {
			ee.Err = st.err
			ee.Msg = st.err.Error()
		} else if strings.Contains(ee.Msg, "memory budget exceeded") {
			// expr's own count of allocated elements.
			ee.Err = ErrBudget
			ee.Msg = ErrBudget.Error() + ": over a million elements"
		}
		return nil, fmt.Errorf("expression %s: %w", quoteShort(p.src), ee)
	}
	return out, nil
}

// evaluation is what one evaluation needs beside its program: the VM
// (its stack), the budget and the variables, kept in a pool so evaluating
// allocates none of them (expr.Run makes a new VM each time, and the
// variables passed by value would be copied to the heap).
type evaluation struct {
	vm   vm.VM
	st   state
	vars Vars
}

var evaluations = sync.Pool{New: func() any { return new(evaluation) }}

// release drops what the evaluation referenced and returns it to the pool.
func (ev *evaluation) release() {
	clear(ev.vm.Stack[:cap(ev.vm.Stack)])
	clear(ev.vm.Variables)
	clear(ev.vm.Scopes[:cap(ev.vm.Scopes)])
	ev.st, ev.vars = state{}, Vars{}
	evaluations.Put(ev)
}

// quoteShort quotes an expression for an error message, cut to a few
// hundred bytes: a message must not carry a 20,000-character literal.
func quoteShort(s string) string {
	const max = 200
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}

// Bool runs a program compiled with asBool without a deadline.
func (p *Program) Bool(v Vars) (bool, error) { return p.BoolContext(context.Background(), v) }

// BoolContext runs a program compiled with asBool, as EvalContext does.
func (p *Program) BoolContext(ctx context.Context, v Vars) (bool, error) {
	out, err := p.EvalContext(ctx, v)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expression %s: want true or false, got %T", quoteShort(p.src), out)
	}
	return b, nil
}

// Template is a string with {{ expression }} parts, such as
// "thumbs/{{ stem(object.key) }}.jpg". It is safe for concurrent use.
type Template struct {
	src   string
	parts []part
}

type part struct {
	lit  string
	prog *Program
}

// ParseTemplate compiles every {{ }} part of s. Errors carry the position
// of the failing part inside s.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{src: s}
	rest, offset := s, 0
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			line, col := lineCol(s, offset+i)
			return nil, &Error{Line: line, Column: col, Msg: `"{{" without a closing "}}"`}
		}
		inner := rest[i+2 : i+2+j]
		p, err := Compile(inner, false)
		if err != nil {
			var ee *Error
			errors.As(err, &ee)
			line, col := lineCol(s, offset+i+2)
			if ee.Line == 1 {
				col += ee.Column
			} else {
				line, col = line+ee.Line-1, ee.Column
			}
			return nil, &Error{Line: line, Column: col, Msg: ee.Msg}
		}
		t.parts = append(t.parts, part{prog: p})
		adv := i + 2 + j + 2
		rest, offset = rest[adv:], offset+adv
	}
}

func lineCol(s string, byteOff int) (int, int) {
	line, col := 1, 0
	for _, r := range s[:byteOff] {
		if r == '\n' {
			line, col = line+1, 0
		} else {
			col++
		}
	}
	return line, col
}

// Source returns the template text.
func (t *Template) Source() string { return t.src }

// Static returns the text and true when the template has no expressions.
func (t *Template) Static() (string, bool) {
	for _, p := range t.parts {
		if p.prog != nil {
			return "", false
		}
	}
	return t.src, true
}

// Render renders the template without a deadline: RenderContext with
// context.Background().
func (t *Template) Render(v Vars) (string, error) { return t.RenderContext(context.Background(), v) }

// RenderContext evaluates the parts, as EvalContext does, and joins them:
// strings as themselves, numbers without trailing zeros, other values as
// fmt's %v. A part that is nil (a missing field) is an error naming it:
// give a default with ?? ({{ payload.user ?? "anon" }}).
func (t *Template) RenderContext(ctx context.Context, v Vars) (string, error) {
	if len(t.parts) == 1 && t.parts[0].prog == nil {
		return t.parts[0].lit, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		out, err := p.prog.EvalContext(ctx, v)
		if err != nil {
			return "", err
		}
		switch x := out.(type) {
		case nil:
			return "", fmt.Errorf("template %s: {{ %s }} is missing (nil); give a default with ?? (as in {{ %s ?? \"none\" }})",
				quoteShort(t.src), strings.TrimSpace(p.prog.src), strings.TrimSpace(p.prog.src))
		case string:
			b.WriteString(x)
		case float64:
			b.WriteString(strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%f", x), "0"), "."))
		default:
			if n := jsonSize(x, MaxBytes); n > MaxBytes {
				return "", fmt.Errorf("template %s: {{ %s }}: %w: its value is over %s as text",
					quoteShort(t.src), strings.TrimSpace(p.prog.src), ErrBudget, human(MaxBytes))
			}
			fmt.Fprint(&b, x)
		}
	}
	return b.String(), nil
}
