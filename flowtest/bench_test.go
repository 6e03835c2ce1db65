package flowtest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/flowtest"
)

// BenchmarkCases runs a test file of 50 cases against a topic flow of two
// steps (a message in; the payload and the published message checked):
// each case starts its own engine on mem:// with a fresh state database,
// several cases at once. cases/s is the rate sluice test reaches on such
// flows; parallel=1 is one case at a time.
func BenchmarkCases(b *testing.B) {
	dir := b.TempDir()
	flow, err := os.ReadFile("testdata/bench/flow.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var t strings.Builder
	t.WriteString("flow: flow.yaml\ncases:\n")
	const n = 50
	for i := range n {
		fmt.Fprintf(&t, "  - name: c%d\n    message: {payload: {n: %d}}\n    payload_subset: {doubled: %d}\n    published: {out: [{doubled: %d}]}\n", i, i, 2*i, 2*i)
	}
	if err := os.WriteFile(filepath.Join(dir, "flow.yaml"), flow, 0o644); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "flow_test.yaml")
	if err := os.WriteFile(path, []byte(t.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, parallel := range []int{1, 0} {
		name := fmt.Sprintf("parallel=%d", parallel)
		if parallel == 0 {
			name = "parallel=default"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				res := flowtest.RunFile(b.Context(), path, flowtest.Options{Parallel: parallel}, nil)
				if res.Failed() || len(res.Cases) != n {
					b.Fatalf("%+v", res)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "cases/s")
		})
	}
}
