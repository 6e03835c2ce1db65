package functions_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each helper runs a handler that echoes, fails transiently or
// permanently, or sets metadata; the test speaks the exec protocol to it.
var handlers = map[string]struct {
	cmd  []string
	file string
	code string
}{
	"python": {[]string{"python3"}, "handler.py", `
from sluice_function import handler, PermanentError, Result

@handler
def handle(req):
    do = req["payload"]["do"]
    if do == "echo":
        return {"echo": req["payload"], "run": req["run"]}
    if do == "keep":
        return None
    if do == "meta":
        return Result({"x": 1}, meta={"lang": "python"})
    if do == "permanent":
        raise PermanentError("bad input")
    raise RuntimeError("flaky")
`},
	"node": {[]string{"node"}, "handler.js", `
const { handler, PermanentError, result } = require('sluice-function');
handler(async (req) => {
  const d = req.payload.do;
  if (d === 'echo') return { echo: req.payload, run: req.run };
  if (d === 'keep') return undefined;
  if (d === 'meta') return result({ x: 1 }, { lang: 'node' });
  if (d === 'permanent') throw new PermanentError('bad input');
  throw new Error('flaky');
});
`},
	"go": {nil, "main.go", `package main

import (
	"encoding/json"
	"errors"

	sluicefn "github.com/sluicehq/sluice/functions/go"
)

func main() {
	sluicefn.Serve(func(req *sluicefn.Request) (any, error) {
		var p map[string]any
		_ = json.Unmarshal(req.Payload, &p)
		switch p["do"] {
		case "echo":
			return map[string]any{"echo": p, "run": req.Run}, nil
		case "keep":
			return nil, nil
		case "meta":
			return sluicefn.Result{Payload: map[string]any{"x": 1}, Meta: map[string]string{"lang": "go"}}, nil
		case "permanent":
			return nil, sluicefn.Permanent(errors.New("bad input"))
		}
		return nil, errors.New("flaky")
	})
}
`},
}

func TestHelpers(t *testing.T) {
	sdk, err := filepath.Abs(".")
	require.NoError(t, err)
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := h.cmd
			if name == "go" {
				// Inside this module, so the import resolves.
				src := filepath.Join(sdk, "go", "internal_test_main")
				require.NoError(t, os.MkdirAll(src, 0o755))
				t.Cleanup(func() { os.RemoveAll(src) })
				require.NoError(t, os.WriteFile(filepath.Join(src, h.file), []byte(h.code), 0o644))
				bin := filepath.Join(dir, "fn")
				out, err := exec.Command("go", "build", "-o", bin, "./go/internal_test_main").CombinedOutput()
				require.NoError(t, err, "%s", out)
				cmd = []string{bin}
			} else {
				if _, err := exec.LookPath(cmd[0]); err != nil {
					if os.Getenv("CI") == "true" {
						t.Fatalf("%s is not installed (scripts/test.sh installs it)", cmd[0])
					}
					t.Skipf("%s is not installed", cmd[0])
				}
				require.NoError(t, os.WriteFile(filepath.Join(dir, h.file), []byte(h.code), 0o644))
				cmd = append(cmd, filepath.Join(dir, h.file))
			}
			c := exec.Command(cmd[0], cmd[1:]...)
			c.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(sdk, "python"), "NODE_PATH="+filepath.Join(sdk, "node"))
			c.Stderr = os.Stderr
			stdin, err := c.StdinPipe()
			require.NoError(t, err)
			stdout, err := c.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, c.Start())
			t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
			lines := bufio.NewScanner(stdout)
			ask := func(req string) map[string]any {
				t.Helper()
				_, err := stdin.Write([]byte(req + "\n"))
				require.NoError(t, err)
				require.True(t, lines.Scan(), "no answer to %s", req)
				var out map[string]any
				require.NoError(t, json.Unmarshal(lines.Bytes(), &out), "%s", lines.Text())
				return out
			}
			assert.Equal(t, map[string]any{"id": "w"}, ask(`{"id":"w","warmup":true}`), "warm-up: answered, handler not run")
			assert.Equal(t, map[string]any{"id": "1", "payload": map[string]any{"echo": map[string]any{"do": "echo", "n": 1.5}, "run": "r-1"}},
				ask(`{"id":"1","run":"r-1","payload":{"do":"echo","n":1.5}}`))
			assert.Equal(t, map[string]any{"id": "2"}, ask(`{"id":"2","payload":{"do":"keep"}}`), "no payload: the run keeps its own")
			assert.Equal(t, map[string]any{"id": "3", "payload": map[string]any{"x": 1.0}, "meta": map[string]any{"lang": name}}, ask(`{"id":"3","payload":{"do":"meta"}}`))
			out := ask(`{"id":"4","payload":{"do":"permanent"}}`)
			assert.Equal(t, true, out["permanent"])
			assert.Contains(t, out["error"], "bad input")
			out = ask(`{"id":"5","payload":{"do":"fail"}}`)
			assert.Nil(t, out["permanent"])
			assert.Contains(t, out["error"], "flaky")
			out = ask(`not json`)
			assert.Equal(t, true, out["permanent"])
			assert.Contains(t, out["error"], "bad request")
			// Still serving after all that.
			assert.Equal(t, "6", ask(`{"id":"6","payload":{"do":"keep"}}`)["id"])
		})
	}
}

func TestHelpersAreSmall(t *testing.T) {
	for _, f := range []string{"python/sluice_function.py", "node/sluice-function.js", "go/sluicefn.go", "go/reactor_wasip1.go"} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.Less(t, strings.Count(string(b), "\n"), 100, f)
	}
}
