package nodes_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
)

type nop struct{}

func (nop) Process(context.Context, *nodes.Envelope) error { return nil }

func newNop(*nodes.Config, nodes.Deps) (nodes.Node, error) { return nop{}, nil }

// spec returns a valid spec with the given fields.
func spec(typ string, fields ...nodes.Field) nodes.Spec {
	return nodes.Spec{Type: typ, Summary: "does nothing", Fields: fields, New: newNop}
}

func TestRegisterChecksSpecs(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec nodes.Spec
		want []string // every one appears in the error
	}{
		{"uppercase type", spec("Image.Thumb"), []string{`invalid type name "Image.Thumb"`}},
		{"empty word", spec("image..thumb"), []string{"invalid type name"}},
		{"leading digit", spec("3d.render"), []string{"invalid type name"}},
		{"trailing dot", spec("image."), []string{"invalid type name"}},
		{"dash", spec("image-thumb"), []string{"invalid type name"}},
		{"no summary", nodes.Spec{Type: "x", New: newNop}, []string{"no summary"}},
		{"no constructor", nodes.Spec{Type: "x", Summary: "s"}, []string{"no constructor"}},
		{"field name", spec("x", nodes.Field{Name: "maxBytes", Kind: nodes.Int}), []string{`field "maxBytes": use lowercase snake case`}},
		{"field twice", spec("x", nodes.Field{Name: "a", Kind: nodes.Int}, nodes.Field{Name: "a", Kind: nodes.String}), []string{`field "a" declared twice`}},
		{"unknown kind", spec("x", nodes.Field{Name: "a", Kind: "blob"}), []string{`field "a": unknown kind "blob"`}},
		{"required with default", spec("x", nodes.Field{Name: "a", Kind: nodes.Int, Required: true, Default: 1}), []string{"required fields take no default"}},
		{"enum without options", spec("x", nodes.Field{Name: "a", Kind: nodes.Enum}), []string{"an enum needs options"}},
		{"enum default not an option", spec("x", nodes.Field{Name: "fmt", Kind: nodes.Enum, Options: []string{"jpeg", "png"}, Default: "gif"}),
			[]string{`default "gif" is not one of the options`}},
		{"option twice", spec("x", nodes.Field{Name: "a", Kind: nodes.Enum, Options: []string{"b", "b"}}), []string{`option "b" listed twice`}},
		{"options on a string", spec("x", nodes.Field{Name: "a", Kind: nodes.String, Options: []string{"b"}}), []string{"options apply to enums only"}},
		{"int default as float", spec("x", nodes.Field{Name: "w", Kind: nodes.Int, Default: 256.0}), []string{`field "w": default 256 is float64, want an int`}},
		{"float default as int", spec("x", nodes.Field{Name: "q", Kind: nodes.Float, Default: 1}), []string{"is int, want a float64"}},
		{"duration default as text", spec("x", nodes.Field{Name: "d", Kind: nodes.Duration, Default: "5s"}), []string{"want a time.Duration"}},
		{"negative duration", spec("x", nodes.Field{Name: "d", Kind: nodes.Duration, Default: -time.Second}), []string{"is negative"}},
		{"bool default as text", spec("x", nodes.Field{Name: "b", Kind: nodes.Bool, Default: "true"}), []string{"want a bool"}},
		{"string list default as string", spec("x", nodes.Field{Name: "l", Kind: nodes.StringList, Default: "a"}), []string{"want a []string"}},
		{"string default as int", spec("x", nodes.Field{Name: "s", Kind: nodes.String, Default: 1}), []string{"want a string"}},
		{"expression that does not compile", spec("x", nodes.Field{Name: "e", Kind: nodes.Expr, Default: "payload."}), []string{`default expression "payload." does not compile`}},
		{"unknown variable", spec("x", nodes.Field{Name: "e", Kind: nodes.Expr, Default: "paylod.x"}), []string{"does not compile"}},
		{"condition that is not boolean", spec("x", nodes.Field{Name: "c", Kind: nodes.Condition, Default: `"yes"`}), []string{"does not compile"}},
		{"template that does not compile", spec("x", nodes.Field{Name: "t", Kind: nodes.Template, Default: "{{ payload. }}"}), []string{"default template"}},
		{"map without element kind", spec("x", nodes.Field{Name: "m", Kind: nodes.Map}), []string{"a map needs an element kind"}},
		{"map of objects", spec("x", nodes.Field{Name: "m", Kind: nodes.Map, Elem: nodes.Object}), []string{"a map needs an element kind"}},
		{"element kind on a list", spec("x", nodes.Field{Name: "l", Kind: nodes.StringList, Elem: nodes.String}), []string{"an element kind applies to maps only"}},
		{"object without fields", spec("x", nodes.Field{Name: "o", Kind: nodes.Object}), []string{"an object needs fields"}},
		{"fields on a string", spec("x", nodes.Field{Name: "s", Kind: nodes.String, Fields: []nodes.Field{{Name: "a", Kind: nodes.Int}}}),
			[]string{"nested fields apply to objects and lists only"}},
		{"nested field", spec("x", nodes.Field{Name: "cases", Kind: nodes.List, Fields: []nodes.Field{{Name: "when", Kind: nodes.Condition, Default: "1"}}}),
			[]string{`field "cases.when": default expression "1" does not compile`}},
		{"default on an object", spec("x", nodes.Field{Name: "o", Kind: nodes.Object, Fields: []nodes.Field{{Name: "a", Kind: nodes.Int}}, Default: map[string]any{}}),
			[]string{"a object field takes no default"}},
		{"bounds on a string", spec("x", nodes.Field{Name: "s", Kind: nodes.String, Max: 3}), []string{"bounds apply to int and float fields only"}},
		{"max below min", spec("x", nodes.Field{Name: "n", Kind: nodes.Int, Min: 5, Max: 1}), []string{"max 1 is not above min 5"}},
		{"default out of range", spec("x", nodes.Field{Name: "q", Kind: nodes.Int, Min: 1, Max: 100, Default: 0}), []string{"default 0 is out of range [1, 100]"}},
		{"example of another node", withExample(spec("x"), "node: y"), []string{`example 0 (ex): node "y" is not "x"`}},
		{"example with an unknown field", withExample(spec("x", nodes.Field{Name: "width", Kind: nodes.Int}), "node: x\nwith:\n  wdth: 3"),
			[]string{`example 0 (ex): example:3:3: unknown field "wdth" (did you mean "width"?)`}},
		{"example that is not a step", withExample(spec("x"), "- a"), []string{"want a step"}},
		{"every problem at once", nodes.Spec{Type: "X", Fields: []nodes.Field{{Name: "a", Kind: nodes.Int, Default: "1"}}},
			[]string{"invalid type name", "no summary", "no constructor", `field "a": default "1" is string, want an int`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := nodes.NewRegistry().Register(tc.spec)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.ErrorContains(t, err, w)
			}
			assert.NoError(t, nodes.CheckSpec(withoutProblems()), "the fixture itself is fine")
		})
	}
}

func withExample(s nodes.Spec, yaml string) nodes.Spec {
	s.Examples = []nodes.Example{{Title: "ex", YAML: yaml}}
	return s
}

// withoutProblems is a spec using every kind correctly.
func withoutProblems() nodes.Spec {
	s := spec("image.thumbnail_v2",
		nodes.Field{Name: "s", Kind: nodes.String, Default: "a"},
		nodes.Field{Name: "i", Kind: nodes.Int, Default: 256, Min: 1, Max: 4096},
		nodes.Field{Name: "f", Kind: nodes.Float, Default: 0.5, Min: 0, Max: 1},
		nodes.Field{Name: "b", Kind: nodes.Bool, Default: true},
		nodes.Field{Name: "d", Kind: nodes.Duration, Default: 5 * time.Second},
		nodes.Field{Name: "e", Kind: nodes.Enum, Options: []string{"jpeg", "png"}, Default: "png"},
		nodes.Field{Name: "x", Kind: nodes.Expr, Default: "payload.total * 2"},
		nodes.Field{Name: "c", Kind: nodes.Condition, Default: "payload.ok == true"},
		nodes.Field{Name: "t", Kind: nodes.Template, Default: "{{ object?.key }}"},
		nodes.Field{Name: "l", Kind: nodes.StringList, Default: []string{"a"}},
		nodes.Field{Name: "m", Kind: nodes.Map, Elem: nodes.Template},
		nodes.Field{Name: "o", Kind: nodes.Object, Fields: []nodes.Field{{Name: "a", Kind: nodes.Int}}},
		nodes.Field{Name: "li", Kind: nodes.List, Fields: []nodes.Field{{Name: "when", Kind: nodes.Condition, Required: true}}},
		nodes.Field{Name: "any", Kind: nodes.Any, Default: map[string]any{"k": 1.0}},
	)
	return withExample(s, "node: image.thumbnail_v2\nwith:\n  i: 128\n  li:\n    - when: payload.ok")
}

func TestRegistry(t *testing.T) {
	r := nodes.NewRegistry()
	require.NoError(t, r.Register(withoutProblems()))
	require.NoError(t, r.Register(spec("publish")))
	assert.ErrorContains(t, r.Register(spec("publish")), "publish registered twice")
	assert.Equal(t, []string{"image.thumbnail_v2", "publish"}, r.Types())

	c := r.Clone()
	require.NoError(t, c.Register(spec("test.extra")))
	_, inClone := c.Lookup("test.extra")
	_, inOriginal := r.Lookup("test.extra")
	assert.True(t, inClone)
	assert.False(t, inOriginal, "a clone is extended without touching the original")

	specs := c.Specs()
	require.Len(t, specs, 3)
	assert.Equal(t, "test.extra", specs[2].Type, "sorted by type")
}

// The global Register panics on a bad spec: node packages register from
// init, where a bad spec is a programming error.
func TestGlobalRegisterPanics(t *testing.T) {
	assert.PanicsWithError(t, `nodes: spec "test.bad": field "w": default 1.5 is float64, want an int for a int field`, func() {
		nodes.Register(spec("test.bad", nodes.Field{Name: "w", Kind: nodes.Int, Default: 1.5}))
	})
	_, ok := nodes.Global().Lookup("test.bad")
	assert.False(t, ok, "nothing registered")
}

// A constructor that reported problems but returned a node still fails.
func TestConstructTakesReportedProblems(t *testing.T) {
	s := spec("test.forgetful", nodes.Field{Name: "n", Kind: nodes.Int})
	s.New = func(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
		if c.Int("n") < 0 {
			c.Problemf("n", "must not be negative")
		}
		return nop{}, nil // forgot c.Err()
	}
	c, probs := decode(t, s.Fields, "n: -1")
	require.Empty(t, probs)
	_, err := s.Construct(c, nodes.Deps{})
	assert.EqualError(t, err, `f.yaml:1:4: steps[0] (x): field "n": must not be negative`)

	c, _ = decode(t, s.Fields, "n: 1")
	n, err := s.Construct(c, nodes.Deps{})
	require.NoError(t, err)
	assert.Equal(t, nop{}, n)
}
