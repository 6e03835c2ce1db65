package eval_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/eval"
)

func bombVars() eval.Vars {
	return eval.Vars{Payload: map[string]any{
		"s":    strings.Repeat("x", 20_000),
		"big":  strings.Repeat("y", 1<<20),
		"list": []any{"a", "b"},
	}}
}

// allocated runs f and returns the bytes the Go heap allocated meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Expressions that would allocate gigabytes fail with ErrBudget before
// allocating them.
func TestBombsExceedTheBudget(t *testing.T) {
	for _, src := range []string{
		`len(repeat(payload.s, 999999))`,
		`len(repeat(payload.big, 100))`,
		`len(join(map(1..900000, "x"), payload.s))`,
		`len(replace(payload.s, "", payload.s))`,
		`len(replace(payload.big, "y", payload.s))`,
		`len(reduce(1..64, #acc + #acc, "x"))`,
		`len(reduce(1..9000, #acc + payload.s, ""))`,
		`len(toJSON(map(1..100000, payload)))`,
		`len(string(map(1..100000, payload)))`,
		`len(flatten(map(1..1000, map(1..1000, payload.list))))`,
		`len(map(1..100000, upper(payload.big)))`,
		`len(map(1..100000, fromJSON(toJSON(payload.s))))`,
		`map(1..100000, payload)`, // the result, which a step would encode
		`len(map(1..999999, map(1..999999, #)))`,
	} {
		t.Run(src, func(t *testing.T) {
			p, err := eval.Compile(src, false)
			require.NoError(t, err)
			var out any
			n := allocated(func() { out, err = p.EvalContext(t.Context(), bombVars()) })
			require.ErrorIs(t, err, eval.ErrBudget, "result %v", out)
			assert.Contains(t, err.Error(), "expression exceeded its memory budget")
			assert.Less(t, n, uint64(4*eval.DefaultMaxBytes), "bytes allocated")
			assert.Less(t, len(err.Error()), 600, "the message carries no huge literal")
		})
	}
}

// Ordinary uses of the bounded built-ins are unchanged, types included.
func TestBoundedBuiltinsStillWork(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want any
	}{
		{`repeat("ab", 3)`, "ababab"},
		{`join(["a", "b"], ",")`, "a,b"},
		{`join(payload.list, "-")`, "a-b"},
		{`replace("a.b.c", ".", "/")`, "a/b/c"},
		{`split("a,b", ",")`, []string{"a", "b"}},
		{`upper("abc") + lower("DEF")`, "ABCdef"},
		{`"a" + "b"`, "ab"},
		{`1 + 2`, 3},
		{`1.5 + 2`, 3.5},
		{`reduce(1..4, #acc + string(#), "")`, "1234"},
		{`toJSON({"a": 1})`, "{\n  \"a\": 1\n}"},
		{`fromJSON("[1]")`, []any{1.0}},
		{`len(flatten([[1], [2, [3]]]))`, 3},
		{`concat([1], [2])`, []any{1, 2}},
		{`keys({"a": 1})`, []any{"a"}},
		{`sortBy([3, 1, 2], #)`, []any{1, 2, 3}},
		{`filter(1..5, # > 3)`, []any{4, 5}},
		{`sum(map(1..100, # * 2))`, 10100},
		{`toBase64("hi")`, "aGk="},
	} {
		t.Run(tc.src, func(t *testing.T) {
			p, err := eval.Compile(tc.src, false)
			require.NoError(t, err)
			got, err := p.EvalContext(t.Context(), bombVars())
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// Type errors of the replaced built-ins are still found at compile time.
func TestBoundedBuiltinsTypeErrors(t *testing.T) {
	_, err := eval.Compile(`repeat(1, 2)`, false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "repeat")
	_, err = eval.Compile(`upper(1)`, false)
	require.Error(t, err)
}

// Expressions cannot name the evaluation's state nor call the functions
// the compiler inserts: their names hold a space.
func TestStateIsNotReachable(t *testing.T) {
	for _, src := range []string{`sluice`, `state`, `State`, `sluice state`, `step check(1, 2)`} {
		_, err := eval.Compile(src, false)
		require.Error(t, err, src)
	}
}

// A predicate loop stops when the context ends: the reduce of the issue
// (9,000 elements, quadratic work) ends at its deadline with an error
// instead of running on and succeeding.
func TestPredicatesStopAtTheDeadline(t *testing.T) {
	items := make([]any, 9000)
	for i := range items {
		items[i] = map[string]any{"v": float64(i), "tags": []any{"a", "b", "c"}}
	}
	v := eval.Vars{Payload: map[string]any{"items": items}}
	p, err := eval.Compile(`reduce(payload.items, #acc + count(payload.items, .v < #.v), 0)`, false)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = p.EvalContext(ctx, v)
	require.ErrorIs(t, err, eval.ErrStopped)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, errors.Is(err, eval.ErrBudget))

	// Conditions and templates too.
	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	b, err := eval.Compile(`any(payload.items, .v < 0)`, true)
	require.NoError(t, err)
	_, err = b.BoolContext(canceled, v)
	require.ErrorIs(t, err, context.Canceled)
	tpl, err := eval.ParseTemplate(`n{{ len(filter(payload.items, .v > 1)) }}`)
	require.NoError(t, err)
	_, err = tpl.RenderContext(canceled, v)
	require.ErrorIs(t, err, context.Canceled)
	got, err := tpl.RenderContext(t.Context(), v)
	require.NoError(t, err)
	assert.Equal(t, "n8998", got)
}

// A missing field in a template is an error naming it, unless a default
// is given with ??.
func TestTemplateMissingField(t *testing.T) {
	v := eval.Vars{Payload: map[string]any{"kind": "a"}}
	tpl, err := eval.ParseTemplate(`r/{{ payload.user }}.json`)
	require.NoError(t, err)
	_, err = tpl.Render(v)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "{{ payload.user }} is missing")

	tpl, err = eval.ParseTemplate(`r/{{ payload.user ?? "anon" }}/{{ payload.kind ?? "x" }}.json`)
	require.NoError(t, err)
	got, err := tpl.Render(v)
	require.NoError(t, err)
	assert.Equal(t, "r/anon/a.json", got)
}

// BenchmarkBounded compares a typical condition and a predicate loop,
// bounded (EvalContext), with the same expressions run by expr without
// the bounds, side by side: the ratio is the cost of the bounds.
func BenchmarkBounded(b *testing.B) {
	v := eval.Vars{Payload: map[string]any{"total": 1200.0, "status": "paid", "items": []any{1.0, 2.0, 3.0, 4.0}}}
	for _, src := range []string{
		`payload.total > 1000 && payload.status == "paid"`,
		`"orders/" + payload.status + "/x"`,
		`sum(map(payload.items, # * 2)) > 10`,
	} {
		plain, err := expr.Compile(src, expr.Env(eval.Vars{}))
		require.NoError(b, err)
		bounded, err := eval.Compile(src, false)
		require.NoError(b, err)
		b.Run("expr/"+src, func(b *testing.B) {
			for b.Loop() {
				if _, err := expr.Run(plain, v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("bounded/"+src, func(b *testing.B) {
			for b.Loop() {
				if _, err := bounded.EvalContext(b.Context(), v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
