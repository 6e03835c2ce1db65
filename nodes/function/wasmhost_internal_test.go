package function

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A module's one-line JSON object goes through with the host's fields
// added last, where they win over the module's; anything else is left to
// the decoding path.
func TestWithHostFields(t *testing.T) {
	for name, tc := range map[string]struct {
		out  string
		cold bool
		want string // "" when it does not pass through
	}{
		"payload":         {out: `{"id":"7","payload":{"a":1},"meta":{"k":"v"}}`, want: `{"id":"7","payload":{"a":1},"meta":{"k":"v"},"host_log":"","host_cold":false,"id":"7"}`},
		"cold":            {out: `{"payload":1}`, cold: true, want: `{"payload":1,"host_log":"","host_cold":true,"id":"7"}`},
		"empty":           {out: `{}`, want: `{"host_log":"","host_cold":false,"id":"7"}`},
		"spaces":          {out: "{ \"payload\" : 2 } \r\t ", want: `{ "payload" : 2,"host_log":"","host_cold":false,"id":"7"}`},
		"module's claim":  {out: `{"id":"other","host_cold":true,"host_log":"fake"}`, want: `{"id":"other","host_cold":true,"host_log":"fake","host_log":"","host_cold":false,"id":"7"}`},
		"ends in newline": {out: "{\"payload\":1}\n", want: `{"payload":1,"host_log":"","host_cold":false,"id":"7"}`},
		"two lines":       {out: "{\"payload\":\n1}"},
		"not json":        {out: `{oops}`},
		"not an object":   {out: `[1]`},
		"nothing":         {out: ``},
		"two objects":     {out: `{}{}`},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := withHostFields([]byte("keep"), []byte(tc.out), "7", tc.cold)
			if tc.want == "" {
				assert.False(t, ok, "%s", got)
				return
			}
			require.True(t, ok)
			assert.Equal(t, "keep"+tc.want, string(got))
			r, err := decodeResponse("f", got[len("keep"):], "7")
			require.NoError(t, err)
			assert.Equal(t, tc.cold, r.HostCold)
			assert.Empty(t, r.HostLog)
		})
	}
}
