package sluicefn

import (
	"encoding/json"
	"errors"
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
	_, err := response{ID: "1", Payload: func() {}}.appendJSON(nil)
	assert.Error(t, err)
	_, err = response{ID: "1", Payload: json.RawMessage(`{`)}.appendJSON(nil)
	assert.Error(t, err)
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
