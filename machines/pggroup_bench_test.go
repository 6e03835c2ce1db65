package machines

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
)

// BenchmarkPostgresApply reports durable transitions/s of Apply on
// PostgreSQL with W callers at once (each its own entities, in order, as
// the engine's lanes), group commit tuned several ways, side by side in
// alternating rounds (medians of 3), and transitions per group.
// "single" is no grouping: a statement per transition, concurrent
// statements' flushes shared by PostgreSQL alone.
func BenchmarkPostgresApply(b *testing.B) {
	pgtest.Server(b) // skips without PostgreSQL
	n := max(b.N, 4000)
	type setting struct {
		name           string
		inFlight, size int
		workers        int
		noYield        bool
	}
	var settings []setting
	for _, w := range []int{16, 64} {
		settings = append(settings,
			setting{fmt.Sprintf("w%d_single", w), 64, 1, w, true},
			setting{fmt.Sprintf("w%d_group1", w), 1, 0, w, false},
			setting{fmt.Sprintf("w%d_group1_noyield", w), 1, 0, w, true},
			setting{fmt.Sprintf("w%d_group2", w), 2, 0, w, false},
			setting{fmt.Sprintf("w%d_group4", w), 4, 0, w, false},
		)
	}
	rates, per := map[string][]float64{}, map[string][]float64{}
	for range 3 {
		for _, st := range settings {
			s, err := OpenPostgres(b.Context(), pgtest.URL(b))
			require.NoError(b, err)
			s.maxInFlight, s.maxSize, s.noYield = st.inFlight, st.size, st.noYield
			start := time.Now()
			var wg sync.WaitGroup
			for w := range st.workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					const entities = 8
					for i := range n / st.workers {
						key := fmt.Sprintf("e-%d-%d", w, i%entities)
						v := int64(i / entities)
						if _, _, err := s.Apply(b.Context(), "bench", key, v, Transition{Event: "flip", To: fmt.Sprint(v + 1), Input: fmt.Sprint(w, "-", i)}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			rates[st.name] = append(rates[st.name], float64(n)/el.Seconds())
			per[st.name] = append(per[st.name], float64(s.grouped.Load())/float64(s.groups.Load()))
			s.Close()
		}
	}
	for _, st := range settings {
		b.ReportMetric(med(rates[st.name]), st.name+"/s")
		b.ReportMetric(med(per[st.name]), st.name+"_per_group")
	}
	b.ReportMetric(0, "ns/op")
}

func med(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
