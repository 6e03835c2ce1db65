package eval_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/eval"
)

func vars() eval.Vars {
	return eval.Vars{
		Payload: map[string]any{"total": 1200.0, "status": "paid", "items": []any{1.0, 2.0}},
		Object:  map[string]any{"bucket": "uploads", "key": "2026/photo.large.JPG", "size": int64(10)},
		Flow:    "thumbnails",
	}
}

func TestExpressions(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want any
	}{
		{`payload.total > 1000`, true},
		{`payload.status == "paid" && len(payload.items) == 2`, true},
		{`base(object.key)`, "photo.large.JPG"},
		{`stem(object.key)`, "photo.large"},
		{`lower(ext(object.key))`, ".jpg"},
		{`dir(object.key)`, "2026"},
		{`payload.missing ?? "default"`, "default"},
		{`flow`, "thumbnails"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			p, err := eval.Compile(tc.src, false)
			require.NoError(t, err)
			got, err := p.Eval(vars())
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCompileErrorsHavePositions(t *testing.T) {
	for _, tc := range []struct {
		src      string
		asBool   bool
		line     int
		col      int
		contains string
	}{
		{`payload.total >`, false, 1, 14, "unexpected token"},
		{`paylod.total > 3`, false, 1, 0, "unknown name paylod"},
		{`"text"`, true, 1, 0, "expected bool"},
		{`  `, false, 1, 0, "empty expression"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			_, err := eval.Compile(tc.src, tc.asBool)
			require.Error(t, err)
			var ee *eval.Error
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, tc.line, ee.Line)
			assert.Equal(t, tc.col, ee.Column)
			assert.Contains(t, ee.Msg, tc.contains)
		})
	}
}

func TestTemplates(t *testing.T) {
	tpl, err := eval.ParseTemplate("thumbs/{{ stem(object.key) }}-{{ payload.total }}.jpg")
	require.NoError(t, err)
	got, err := tpl.Render(vars())
	require.NoError(t, err)
	assert.Equal(t, "thumbs/photo.large-1200.jpg", got)
	_, static := tpl.Static()
	assert.False(t, static)

	plain, err := eval.ParseTemplate("just text")
	require.NoError(t, err)
	s, static := plain.Static()
	assert.True(t, static)
	assert.Equal(t, "just text", s)

	_, err = eval.ParseTemplate("a {{ payload.x ")
	var ee *eval.Error
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 2, ee.Column)
	assert.Contains(t, ee.Msg, "without a closing")

	_, err = eval.ParseTemplate("key/{{ objct.key }}")
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.Line)
	assert.Equal(t, 7, ee.Column, "points at the unknown name inside the template")
}

func TestBoolRuntimeType(t *testing.T) {
	p, err := eval.Compile(`payload.status`, false)
	require.NoError(t, err)
	_, err = p.Bool(vars())
	assert.ErrorContains(t, err, "want true or false")
}
