package core

import (
	"context"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

const (
	transformPayload = "payload"
	transformSet     = "set"
	transformDelete  = "delete"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "transform",
		Summary: "Reshape the JSON payload with expressions.",
		Description: "`payload` replaces the whole payload with an expression's value; then `set` assigns " +
			"fields (dotted paths create nested objects), each expression seeing the payload as it was " +
			"before the step; then `delete` removes fields. The payload is changed in place.",
		Fields: []nodes.Field{
			{Name: transformPayload, Kind: nodes.Expr, Doc: "Expression for the new payload."},
			{Name: transformSet, Kind: nodes.Map, Elem: nodes.Expr, Doc: "Field path → expression."},
			{Name: transformDelete, Kind: nodes.StringList, Doc: "Field paths to remove."},
		},
		Examples: []nodes.Example{{Title: "Compute a total", YAML: "node: transform\nwith:\n  set:\n    total: payload.qty * payload.price\n    customer.tier: 'payload.total > 1000 ? \"gold\" : \"standard\"'\n  delete: [internal]"}},
		New:      newTransform,
	})
}

type transform struct {
	payload *eval.Program
	set     []nodes.MapEntry
	setPath [][]string // set's keys split at dots
	del     [][]string
}

func newTransform(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	if !c.Has(transformPayload) && !c.Has(transformSet) && !c.Has(transformDelete) {
		return nil, c.Errorf("", "set at least one of %q, %q or %q", transformPayload, transformSet, transformDelete)
	}
	t := &transform{payload: c.Expr(transformPayload), set: c.Map(transformSet)}
	for _, s := range t.set {
		t.setPath = append(t.setPath, strings.Split(s.Key, "."))
	}
	for _, d := range c.Strings(transformDelete) {
		t.del = append(t.del, strings.Split(d, "."))
	}
	return t, nil
}

func (t *transform) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	out := env.Payload
	if t.payload != nil {
		v, err := t.payload.EvalContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(err)
		}
		out = v
	}
	if len(t.set) > 0 || len(t.del) > 0 {
		// Evaluate everything against the payload as it was, then assign:
		// the payload is the envelope's own (decoded for this run), so it is
		// changed in place.
		vals := make([]any, len(t.set))
		for i, s := range t.set {
			v, err := s.Value.(*eval.Program).EvalContext(ctx, vars)
			if err != nil {
				return nodes.ExprError(err)
			}
			vals[i] = v
		}
		obj, ok := out.(map[string]any)
		if !ok {
			if out != nil {
				return nodes.Permanent(fmt.Errorf("cannot set fields on a payload that is %T, not an object", out))
			}
			obj = map[string]any{}
		}
		for i, s := range t.set {
			if err := setPath(obj, t.setPath[i], vals[i]); err != nil {
				return nodes.Permanent(fmt.Errorf("set %s: %w", s.Key, err))
			}
		}
		for _, d := range t.del {
			deletePath(obj, d)
		}
		out = obj
	}
	env.Payload = out
	return nil
}

func setPath(obj map[string]any, path []string, v any) error {
	for _, p := range path[:len(path)-1] {
		next, ok := obj[p].(map[string]any)
		if !ok {
			if obj[p] != nil {
				return fmt.Errorf("%q is %T, not an object", p, obj[p])
			}
			next = map[string]any{}
			obj[p] = next
		}
		obj = next
	}
	obj[path[len(path)-1]] = v
	return nil
}

func deletePath(obj map[string]any, path []string) {
	for _, p := range path[:len(path)-1] {
		next, ok := obj[p].(map[string]any)
		if !ok {
			return
		}
		obj = next
	}
	delete(obj, path[len(path)-1])
}

var _ nodes.Node = (*transform)(nil)
