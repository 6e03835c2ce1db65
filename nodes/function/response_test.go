package function

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var responseLines = []string{
	`{"id":"1","payload":{"calls":3,"upper":"HI"},"meta":{"handled_by":"go","n":2},"host_log":"","host_cold":false,"id":"1"}` + "\n",
	`{"id":"1"}`,
	`{}`,
	` { "id" : "1" , "payload" : [ 1 , { "a" : "}" } ] , "permanent" : true } ` + "\n",
	`{"id":"1","payload":null,"meta":null,"error":null,"permanent":null}`,
	`{"id":"1","payload":"a \"quoted\" }{ string","error":"bad","permanent":true}`,
	`{"id":"1","payload":-1.5e3}`,
	`{"id":"1","payload":true,"future":{"x":[1,2,"]"]},"other":null}`,
	`{"id":"1","meta":{"a":1},"meta":{"b":2}}`,
	`{"id":"1","payload":1,"payload":2}`,
	`{"ID":"1"}`,
	`{"Payload":{"a":1},"id":"1"}`,
	`{"\u0069d":"1"}`,
	`{"id":"é"}`,
	`{"id":"a\u00e9b","error":"tab\there"}`,
	`{"id":"1","error":"\xff"}`,
	`{"id":1}`,
	`{"id":"1","permanent":"yes"}`,
	`{"id":"1","meta":"x"}`,
	`{"id":"1","host_cold":1}`,
	`[1]`,
	`"x"`,
	`null`,
	`oops`,
	`{"id":"1",}`,
	`{"id":"1"} {}`,
	``,
}

// scanResponse reads what encoding/json reads, or leaves the line to it.
func TestScanResponseMatchesEncodingJSON(t *testing.T) {
	plain := 0
	for _, line := range responseLines {
		if checkScan(t, []byte(line)) {
			plain++
		}
	}
	assert.Greater(t, plain, 8, "the usual shapes are scanned")
}

func FuzzScanResponse(f *testing.F) {
	for _, line := range responseLines {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkScan(t, line) })
}

// checkScan compares scanResponse with json.Unmarshal on line and
// reports whether it was scanned.
func checkScan(t *testing.T, line []byte) bool {
	t.Helper()
	got, err := scanResponse(line)
	var want response
	jerr := json.Unmarshal(line, &want)
	if err != nil {
		return false
	}
	require.NoError(t, jerr, "%q: scanned, but encoding/json refuses it", line)
	assert.Equal(t, want, *got, "%q", line)
	return true
}

// A response that is not JSON fails permanently, quoting it; one for
// another request names both ids.
func TestDecodeResponseErrors(t *testing.T) {
	_, err := decodeResponse("f", []byte("oops\n"), "1")
	assert.ErrorContains(t, err, `function f: response is not a JSON object`)
	assert.ErrorContains(t, err, `"oops"`)
	_, err = decodeResponse("f", []byte(`{"id":"1","meta":"x"}`), "1")
	assert.ErrorContains(t, err, "cannot unmarshal string")
	_, err = decodeResponse("f", []byte(`{"id":"2"}`), "1")
	assert.ErrorContains(t, err, `response answers id "2", want "1"`)
	r, err := decodeResponse("f", []byte(`{"ID":"1","payload":{"a":1}}`), "1")
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":1}`, string(r.Payload))
}
