package sluicefn

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// appendJSON must write what encoding/json writes for every response,
// escapes and omitted fields included.
func TestResponseAppendJSONMatchesEncodingJSON(t *testing.T) {
	for name, r := range map[string]response{
		"id only":        {ID: "1"},
		"empty":          {},
		"payload":        {ID: "a1", Payload: map[string]any{"b": []int{1, 2}, "a": "x"}},
		"raw payload":    {ID: "a1", Payload: json.RawMessage(` { "a" : 1 } `)},
		"typed nil":      {ID: "a1", Payload: (*struct{})(nil)},
		"meta":           {ID: "1", Payload: 3.5, Meta: map[string]string{"z": "1", "a": "<&>"}},
		"empty meta":     {ID: "1", Meta: map[string]string{}},
		"error":          {ID: "1", Error: `bad "quote" \ back`, Permanent: true},
		"html and utf8":  {ID: "<a&b>", Error: "é\u2028\x01\x7f"},
		"invalid utf8":   {ID: "1", Error: "a\xffb"},
		"string payload": {ID: "1", Payload: "just a string"},
		"handler values": {ID: "1", Payload: map[string]any{"upper": "HÉ <b>", "pid": 3, "calls": int64(-7), "n": []any{1.5, -0.0, 1e20, 1e21, 1e-6, 1e-7, 123456789.0, nil, true, map[string]string{"b": "2", "a": "1"}}}},
		"nil containers": {ID: "1", Payload: []any{map[string]any(nil), []any(nil), map[string]string(nil), map[string]any{}, []any{}}},
		"other types":    {ID: "1", Payload: map[string]any{"s": struct{ A int }{1}, "m": map[string]int{"z": 1, "a": 2}, "f32": float32(0.1), "u": uint8(7)}},
	} {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(r)
			require.NoError(t, err)
			got, err := r.appendJSON([]byte("keep:"))
			require.NoError(t, err)
			assert.Equal(t, "keep:"+string(want), string(got))
		})
	}
}

func TestResponseAppendJSONFailsOnBadPayload(t *testing.T) {
	for _, p := range []any{func() {}, json.RawMessage(`{`), math.NaN(), map[string]any{"a": []any{math.Inf(1)}}} {
		_, want := json.Marshal(p)
		_, err := response{ID: "1", Payload: p}.appendJSON(nil)
		assert.Equal(t, want, err, "%v", p)
	}
}

// Any JSON a handler decoded and returns encodes as encoding/json
// encodes it.
func FuzzAppendValue(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x",null,true,{"b":{}}],"<":"&"}`, `[1e300,-1e-300,0.000001,123456789012345678901234]`, `"\u2028\ud800"`, `{"\u00e9":"\\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		want, werr := json.Marshal(v)
		got, err := appendValue(nil, v)
		require.Equal(t, werr, err)
		require.Equal(t, string(want), string(got))
	})
}

// One buffer serves request after request (as in a reactor): a short
// answer after a long one carries nothing of it.
func TestAppendAnswerReusesBuffer(t *testing.T) {
	echo := func(req *Request) (any, error) {
		switch string(req.Payload) {
		case `"fail"`:
			return nil, Permanent(errors.New("no"))
		case `"func"`:
			return func() {}, nil
		}
		return req.Payload, nil
	}
	var buf []byte
	for _, c := range []struct{ req, want string }{
		{`{"id":"1","payload":{"long":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`, `{"id":"1","payload":{"long":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`},
		{`{"id":"2","payload":1}`, `{"id":"2","payload":1}`},
		{`{"id":"3","payload":"fail"}`, `{"id":"3","error":"no","permanent":true}`},
		{`{"id":4}`, `{"id":"","error":"bad request: id: not a string","permanent":true}`},
		{`{"id":"warmup","warmup":true}`, `{"id":"warmup"}`},
		{`{"id":"5","payload":"func"}`, `{"id":"5","error":"encode response: json: unsupported type: func()","permanent":true}`},
	} {
		buf = appendAnswer(buf[:0], []byte(c.req), echo)
		assert.Equal(t, c.want, string(buf), c.req)
		assert.Equal(t, c.want, string(Answer([]byte(c.req), echo)), c.req)
	}
}
