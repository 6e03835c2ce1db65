package flowtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// mismatch is one difference between an expected and an actual value, at
// a path inside them (map keys and list indexes).
type mismatch struct {
	path []any
	msg  string
}

// jsonMarshal encodes v as JSON without escaping HTML characters.
func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// normalizeJSON turns any value into what encoding/json decodes (maps of
// string, float64 numbers), so expected and actual values compare alike.
func normalizeJSON(v any) any {
	switch v.(type) {
	case nil, string, bool, float64:
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return fmt.Sprint(v)
	}
	return out
}

// decodeJSON reads a message or body as JSON, or returns it as a string.
func decodeJSON(b []byte) any {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	return v
}

// compare reports where got differs from want: exactly, or, with subset,
// where want's maps hold keys got lacks or values that differ (got may
// hold more keys; lists must have want's length, compared item by item).
func compare(want, got any, subset bool) []mismatch {
	var out []mismatch
	walk(normalizeJSON(want), normalizeJSON(got), subset, nil, &out)
	return out
}

func walk(want, got any, subset bool, path []any, out *[]mismatch) {
	add := func(format string, args ...any) {
		*out = append(*out, mismatch{path: append([]any(nil), path...), msg: fmt.Sprintf(format, args...)})
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			add("got %s, want an object", show(got))
			return
		}
		for _, k := range sortedKeys(w) {
			gv, ok := g[k]
			if !ok {
				*out = append(*out, mismatch{path: append(append([]any(nil), path...), k), msg: fmt.Sprintf("missing; want %s", show(w[k]))})
				continue
			}
			walk(w[k], gv, subset, append(path, k), out)
		}
		if !subset {
			for _, k := range sortedKeys(g) {
				if _, ok := w[k]; !ok {
					*out = append(*out, mismatch{path: append(append([]any(nil), path...), k), msg: fmt.Sprintf("unexpected %s", show(g[k]))})
				}
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			add("got %s, want a list", show(got))
			return
		}
		if len(g) != len(w) {
			add("got %d items %s, want %d", len(g), show(got), len(w))
			return
		}
		for i := range w {
			walk(w[i], g[i], subset, append(path, i), out)
		}
	default:
		if !equalScalar(want, got) {
			add("got %s, want %s", show(got), show(want))
		}
	}
}

func equalScalar(want, got any) bool {
	if want == got {
		return true
	}
	// "42" against 42 is a difference: types matter, as in JSON.
	return false
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// show prints a value as JSON, shortened.
func show(v any) string {
	b, err := jsonMarshal(v)
	s := string(b)
	if err != nil {
		s = fmt.Sprint(v)
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// pathString renders a path under root: payload.items[2].name.
func pathString(root string, path []any) string {
	var b strings.Builder
	b.WriteString(root)
	for _, p := range path {
		switch k := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		case string:
			if identRE.MatchString(k) {
				b.WriteString("." + k)
			} else {
				fmt.Fprintf(&b, "[%q]", k)
			}
		}
	}
	return b.String()
}
