package function

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func cgroupTestPool(t *testing.T, logs *bytes.Buffer) *execPool {
	p := &execPool{
		name: "handler.py", command: []string{"python3", "testdata/handler.py"}, maxWorkers: 1, maxOutput: 1 << 20,
		memory: 200 << 20, cpus: 0.5, log: slog.New(slog.NewTextHandler(logs, nil)),
	}
	require.NoError(t, p.start(t.Context()))
	t.Cleanup(func() { assert.NoError(t, p.close()) })
	return p
}

func testCall(p *execPool, do string) (*response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.call(ctx, &call{id: "1", req: []byte(`{"id":"1","run":"r","attempt":1,"payload":{"do":"` + do + `"}}` + "\n")})
}

// Where cgroup v2 is delegated to Sluice (memory and cpu controllers in
// its own cgroup), each worker gets a cgroup with memory.max and cpu.max,
// a hog is killed by it, and the cgroup goes with the worker. Elsewhere
// (cgroup v1 hosts such as the project's machine) the pool says once why
// and its workers run under rlimits alone.
func TestWorkerCgroups(t *testing.T) {
	var logs bytes.Buffer
	dir, cgErr := workerCgroups()
	p := cgroupTestPool(t, &logs)
	resp, err := testCall(p, "ok")
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	if cgErr != nil {
		t.Logf("no worker cgroups on this machine: %v", cgErr)
		assert.Contains(t, logs.String(), "no cgroup of their own")
		assert.Contains(t, logs.String(), "cpus is not applied")
		assert.Contains(t, logs.String(), cgErr.Error()[:20])
		testCall(p, "ok")
		assert.Equal(t, 1, strings.Count(logs.String(), "no cgroup of their own"), "said once")
		return
	}
	w := <-p.idle
	p.idle <- w
	own, err := os.ReadFile("/proc/" + strconv.Itoa(w.pid) + "/cgroup")
	require.NoError(t, err)
	rel := ""
	for _, l := range strings.Split(string(own), "\n") {
		if r, ok := strings.CutPrefix(l, "0::"); ok {
			rel = r
		}
	}
	mnt, err := cgroup2Mount()
	require.NoError(t, err)
	cg := filepath.Join(mnt, rel)
	assert.Equal(t, dir, filepath.Dir(cg))
	require.True(t, strings.HasPrefix(filepath.Base(rel), "fn-"), "worker in %s", rel)
	b, err := os.ReadFile(filepath.Join(cg, "memory.max"))
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(200<<20), strings.TrimSpace(string(b)))
	b, err = os.ReadFile(filepath.Join(cg, "cpu.max"))
	require.NoError(t, err)
	assert.Equal(t, "50000 100000", strings.TrimSpace(string(b)))
	_, err = testCall(p, "hog")
	require.Error(t, err)
	require.Eventually(t, func() bool { _, err := os.Stat(cg); return os.IsNotExist(err) }, 10*time.Second, 20*time.Millisecond, "the cgroup is removed with its worker")
}
