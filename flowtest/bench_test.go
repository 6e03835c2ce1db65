package flowtest_test

import (
	"testing"

	"github.com/sluicehq/sluice/flowtest"
)

// BenchmarkCase runs a one-case test file (a topic flow of two steps, a
// message in, payload and published message checked): each case starts
// its own engine on mem:// with a fresh state. cases/s is the rate
// sluice test reaches on such flows.
func BenchmarkCase(b *testing.B) {
	for b.Loop() {
		res := flowtest.RunFile(b.Context(), "testdata/bench/flow_test.yaml", flowtest.Options{}, nil)
		if res.Failed() {
			b.Fatalf("%+v", res)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cases/s")
}
