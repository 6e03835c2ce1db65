package flows

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
)

func TestQuantilesInterpolateInBuckets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		observed []float64
		p50, p99 time.Duration
	}{
		{"nothing observed", nil, 0, 0},
		// 100 observations in (0.1, 0.2]: the median is half way.
		{"one bucket", repeat(0.15, 100), 150 * time.Millisecond, 199 * time.Millisecond},
		// 99 fast, 1 slow: the 99th percentile is the top of the fast bucket.
		{"a slow tail", append(repeat(0.05, 99), 5), 50 * time.Millisecond, 100 * time.Millisecond},
		// Beyond the last bucket only its bound is known.
		{"past the last bucket", repeat(60, 10), time.Second, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: []float64{0.1, 0.2, 1}})
			for _, v := range tc.observed {
				h.Observe(v)
			}
			p50, p99 := quantiles(h)
			assert.InDelta(t, float64(tc.p50), float64(p50), float64(time.Millisecond))
			assert.InDelta(t, float64(tc.p99), float64(p99), float64(time.Millisecond))
		})
	}
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
