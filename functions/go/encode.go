package sluicefn

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
)

// appendJSON appends what json.Marshal(r) gives, without encoding/json's
// reflection for the response itself and for the values a handler
// usually returns: in a wasip1 module reflection costs ~10× its native
// time, a large part of a small call.
func (r response) appendJSON(b []byte) ([]byte, error) {
	b = appendJSONString(append(b, `{"id":`...), r.ID)
	var err error
	if r.Payload != nil {
		if b, err = appendValue(append(b, `,"payload":`...), r.Payload); err != nil {
			return nil, err
		}
	}
	if len(r.Meta) > 0 {
		b = appendStrings(append(b, `,"meta":`...), r.Meta)
	}
	if r.Error != "" {
		b = appendJSONString(append(b, `,"error":`...), r.Error)
	}
	if r.Permanent {
		b = append(b, `,"permanent":true`...)
	}
	return append(b, '}'), nil
}

// appendValue appends v as json.Marshal does: JSON's own types (maps with
// string keys, []any, strings, bools, numbers, nil) directly, anything
// else through encoding/json.
func appendValue(b []byte, v any) ([]byte, error) {
	var err error
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case float64:
		// encoding/json's 'f' range; it writes others with an exponent
		// and refuses NaN and infinities.
		if a := math.Abs(v); a == 0 || a >= 1e-6 && a < 1e21 {
			return strconv.AppendFloat(b, v, 'f', -1, 64), nil
		}
	case map[string]string:
		if v != nil {
			return appendStrings(b, v), nil
		}
	case map[string]any:
		if v == nil {
			break
		}
		b = append(b, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(append(appendJSONString(b, k), ':'), v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		if v == nil {
			break
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	p, err := json.Marshal(v)
	return append(b, p...), err
}

// appendStrings appends m with its keys sorted, as encoding/json does.
func appendStrings(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(append(appendJSONString(b, k), ':'), m[k])
	}
	return append(b, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendJSONString appends s quoted as encoding/json quotes it: plain
// ASCII directly, anything needing an escape through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}
