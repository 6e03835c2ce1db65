package nodes_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/nodes"
)

func TestRecord(t *testing.T) {
	for _, tc := range []struct {
		name     string
		original string
		payload  any
		want     string
	}{
		{"a JSON string stays JSON", `"hello"`, "hello", `"hello"`},
		{"a number", `42`, 42.0, `42`},
		{"an object", `{"a":1}`, map[string]any{"a": 1.0}, `{"a":1}`},
		{"text stays text", `hello world`, "hello world", `hello world`},
		{"a step made text JSON", `hello`, map[string]any{"msg": "hello"}, `{"msg":"hello"}`},
		{"a step made a JSON string", `{"a":1}`, "x", `"x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := nodes.NewEnvelope(nil, 0)
			env.Payload = tc.payload
			got, err := env.Record([]byte(tc.original))
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
}
