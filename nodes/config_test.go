package nodes_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

// decode decodes src (a with: block) against fields as file "f.yaml".
func decode(t *testing.T, fields []nodes.Field, src string) (*nodes.Config, nodes.Problems) {
	t.Helper()
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(src), &doc))
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	return nodes.Decode("f.yaml", "steps[0] (x)", fields, root, nodes.Pos{File: "f.yaml", Line: 1, Col: 1})
}

var thumbFields = []nodes.Field{
	{Name: "width", Kind: nodes.Int, Default: 256, Min: 1, Max: 4096},
	{Name: "quality", Kind: nodes.Float, Default: 0.8},
	{Name: "format", Kind: nodes.Enum, Options: []string{"jpeg", "png"}, Default: "jpeg"},
	{Name: "timeout", Kind: nodes.Duration, Default: 2 * time.Second},
	{Name: "sharpen", Kind: nodes.Bool},
	{Name: "bucket", Kind: nodes.Template, Default: "{{ object?.bucket }}", Role: nodes.RoleBucket},
	{Name: "when", Kind: nodes.Condition, Default: "payload.ok == true"},
	{Name: "tags", Kind: nodes.StringList},
	{Name: "meta", Kind: nodes.Map, Elem: nodes.Template},
	{Name: "cases", Kind: nodes.List, Fields: []nodes.Field{
		{Name: "when", Kind: nodes.Condition, Required: true},
		{Name: "topic", Kind: nodes.String, Role: nodes.RoleTopic},
	}},
	{Name: "extra", Kind: nodes.Any},
}

func TestDecodeValuesAndDefaults(t *testing.T) {
	c, probs := decode(t, thumbFields, `
width: 640
format: png
timeout: 1m30s
tags: one
meta: {tenant: "{{ payload.t }}"}
cases:
  - when: payload.n > 1
    topic: big
extra: {n: 1, l: [2]}
`)
	require.Empty(t, probs)
	assert.Equal(t, 640, c.Int("width"))
	assert.Equal(t, 0.8, c.Float("quality"), "default")
	assert.Equal(t, "png", c.String("format"))
	assert.Equal(t, 90*time.Second, c.Duration("timeout"))
	assert.False(t, c.Bool("sharpen"), "no default: the zero value")
	assert.Equal(t, []string{"one"}, c.Strings("tags"), "a scalar is a list of one")
	assert.True(t, c.Has("width"))
	assert.False(t, c.Has("quality"))
	assert.Equal(t, []string{"cases", "extra", "format", "meta", "tags", "timeout", "width"}, c.Names())
	assert.Equal(t, map[string]any{"n": 1.0, "l": []any{2.0}}, c.Any("extra"), "numbers as JSON decodes them")

	// Default expressions and templates compile from their source.
	ok, err := c.Expr("when").Bool(eval.Vars{Payload: map[string]any{"ok": true}})
	require.NoError(t, err)
	assert.True(t, ok)
	s, err := c.Template("bucket").Render(eval.Vars{Object: map[string]any{"bucket": "photos"}})
	require.NoError(t, err)
	assert.Equal(t, "photos", s)

	meta := c.Map("meta")
	require.Len(t, meta, 1)
	assert.Equal(t, "tenant", meta[0].Key)
	assert.Equal(t, nodes.Pos{File: "f.yaml", Line: 6, Col: 17}, meta[0].Pos, "after the opening quote")

	cases := c.List("cases")
	require.Len(t, cases, 1)
	assert.Equal(t, "big", cases[0].String("topic"))
	assert.Equal(t, nodes.Pos{File: "f.yaml", Line: 9, Col: 12}, cases[0].Pos("topic"))
	assert.Equal(t, []nodes.Ref{{Role: nodes.RoleTopic, Value: "big", Pos: nodes.Pos{File: "f.yaml", Line: 9, Col: 12}}}, c.Refs(),
		"the nested topic is a ref; the absent bucket is not")

	assert.Equal(t, nodes.Pos{File: "f.yaml", Line: 2, Col: 8}, c.Pos("width"))
	assert.Equal(t, nodes.Pos{File: "f.yaml", Line: 1, Col: 1}, c.Pos("quality"), "an absent field is at the block")

	assert.PanicsWithValue(t, `nodes: config has no field "height"`, func() { c.Int("height") }, "a bug in the node")
	assert.Panics(t, func() { c.String("width") }, "the wrong getter is a bug in the node")
}

func TestDecodeReportsEveryProblemWithItsPosition(t *testing.T) {
	_, probs := decode(t, thumbFields, `
widht: 10
width: 9000
format: gif
timeout: soon
sharpen: "yes"
when: payload. == 1
cases:
  - topic: t
  - {when: "true", topc: u}
`)
	got := []string{}
	require.Error(t, probs.Err()) // sorts them by position
	for _, p := range probs {
		got = append(got, p.Error())
	}
	assert.Equal(t, []string{
		`f.yaml:2:1: steps[0] (x): unknown field "widht"`,
		`f.yaml:3:8: steps[0] (x): field "width": 9000 is out of range [1, 4096]`,
		`f.yaml:4:9: steps[0] (x): field "format": "gif" is not one of jpeg, png`,
		`f.yaml:5:10: steps[0] (x): field "timeout": want a duration such as "500ms" or "1m30s", got "soon"`,
		`f.yaml:6:11: steps[0] (x): field "sharpen": want true or false, got "yes"`,
		`f.yaml:7:19: steps[0] (x): field "when": bad expression: expected name`,
		`f.yaml:9:5: steps[0] (x): cases[0]: missing required field "when"`,
		`f.yaml:10:20: steps[0] (x): cases[1]: unknown field "topc" (did you mean "topic"?)`,
	}, got)
}

func TestConfigCollectsProblems(t *testing.T) {
	c, probs := decode(t, thumbFields, `
width: 300
meta: {"bad key": x, ok: y}
cases:
  - {when: "true", topic: a}
  - {when: "true"}
`)
	require.Empty(t, probs)
	require.NoError(t, c.Err(), "nothing reported yet")

	// A constructor reports every problem, nested configs' included, and
	// returns Err once.
	for i, cc := range c.List("cases") {
		if !cc.Has("topic") {
			cc.Problemf("", "case %d needs a topic", i)
		}
	}
	c.Problemf("width", "must be even")
	c.ProblemAt(c.Map("meta")[0].Pos, "meta", "key %q has a space", "bad key")
	c.Problemf("", "one more")

	err := c.Err()
	require.Error(t, err)
	var ps nodes.Problems
	require.True(t, errors.As(err, &ps))
	got := []string{}
	for _, p := range ps {
		got = append(got, p.Error())
	}
	assert.Equal(t, []string{
		`f.yaml:1:1: steps[0] (x): one more`,
		`f.yaml:2:8: steps[0] (x): field "width": must be even`,
		`f.yaml:3:19: steps[0] (x): field "meta": key "bad key" has a space`,
		`f.yaml:6:5: steps[0] (x): case 1 needs a topic`,
	}, got, "sorted by position")

	one := c.Errorf("width", "too wide")
	assert.Equal(t, `f.yaml:2:8: steps[0] (x): field "width": too wide`, one.Error())
	require.ErrorAs(t, c.Err(), &ps)
	assert.Len(t, ps, 4, "Errorf returns its problem without recording it")
}

func TestProblems(t *testing.T) {
	var ps nodes.Problems
	assert.NoError(t, ps.Err())
	ps.Add(nodes.Pos{File: "b.yaml", Line: 1, Col: 1}, "second file")
	ps.Add(nodes.Pos{File: "a.yaml", Line: 3, Col: 2}, "later %s", "line")
	ps.Add(nodes.Pos{File: "a.yaml", Line: 3, Col: 1}, "earlier column")
	ps.Add(nodes.Pos{File: "a.yaml"}, "whole file")
	assert.Equal(t, "a.yaml: whole file\na.yaml:3:1: earlier column\na.yaml:3:2: later line\nb.yaml:1:1: second file", ps.Err().Error())
}
