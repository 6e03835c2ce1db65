package sluicefn

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodeRequest must read what encoding/json reads from every request
// Sluice sends, whitespace and escapes included.
func TestDecodeRequestMatchesEncodingJSON(t *testing.T) {
	for name, line := range map[string]string{
		"minimal":  `{"id":"1","payload":{"do":"ok"}}`,
		"full":     `{"id":"a1","flow":"invoices","run":"r-9","attempt":3,"deadline":"2026-11-29T18:00:00.5Z","event":{"id":"m","topic":"t","time":"0001-01-01T00:00:00Z"},"payload":{"text":"x \"quoted\" }{ ][","n":[1,{"a":[]}],"b":true},"meta":{"k":"v","e":"\u00e9"},"object":{"bucket":"in","key":"a b.txt","size":12},"body_path":"/sluice/in/a1"}`,
		"spaces":   " { \"id\" : \"x\" ,\n\t\"attempt\" : 1 , \"payload\" : [ 1 , 2 ] , \"meta\" : { } }\n",
		"escapes":  `{"id":"tab\there","run":"\u0041\\","payload":"just a string"}`,
		"nulls":    `{"id":"1","flow":null,"payload":null,"object":null,"meta":null}`,
		"scalar":   `{"id":"1","payload":-12.5e3,"warmup":false}`,
		"warmup":   `{"id":"warmup","warmup":true}`,
		"unknown":  `{"id":"1","future":{"x":[1,2,"]"]},"payload":{}}`,
		"emptyobj": `{}`,
	} {
		t.Run(name, func(t *testing.T) {
			var want, got Request
			require.NoError(t, json.Unmarshal([]byte(line), &want))
			require.NoError(t, decodeRequest([]byte(line), &got))
			if want.Payload == nil && string(got.Payload) == "null" {
				got.Payload = nil // encoding/json leaves a null RawMessage as "null" too; normalise spacing only
			}
			assert.Equal(t, want.ID, got.ID)
			assert.Equal(t, want.Flow, got.Flow)
			assert.Equal(t, want.Run, got.Run)
			assert.Equal(t, want.Attempt, got.Attempt)
			assert.True(t, want.Deadline.Equal(got.Deadline))
			assert.Equal(t, want.Meta, got.Meta)
			assert.Equal(t, want.Object, got.Object)
			assert.Equal(t, want.BodyPath, got.BodyPath)
			assert.Equal(t, want.Warmup, got.Warmup)
			assert.JSONEq(t, orNull(want.Payload), orNull(got.Payload))
			assert.JSONEq(t, orNull(want.Event), orNull(got.Event))
		})
	}
}

func orNull(b []byte) string {
	if len(b) == 0 {
		return "null"
	}
	return string(b)
}

func TestDecodeRequestRejectsBadInput(t *testing.T) {
	for _, line := range []string{``, `[1]`, `{"id":1}`, `{"id":"1","attempt":"x"}`, `{"id":"unterminated`, `{"deadline":"yesterday"}`, `{"payload":{"a":1}`, `{"id" "x"}`, `{"id":"x" "run":"y"}`} {
		var r Request
		assert.Error(t, decodeRequest([]byte(line), &r), line)
	}
}

// The handler may keep the payload: it must not alias the caller's buffer.
func TestDecodeRequestCopies(t *testing.T) {
	line := []byte(`{"id":"1","payload":{"a":1}}`)
	var r Request
	require.NoError(t, decodeRequest(line, &r))
	copy(line, `{"id":"2","payload":{"b":2}}`)
	assert.JSONEq(t, `{"a":1}`, string(r.Payload))
}
