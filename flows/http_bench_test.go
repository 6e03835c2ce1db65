package flows_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const httpBenchFlow = `
name: price
on:
  http: {path: /price, methods: [POST]}
steps:
  - node: transform
    with: {set: {total: payload.qty * payload.price}}
  - node: respond
`

// bareHandler does the flow's JSON work with net/http alone.
func bareHandler(w http.ResponseWriter, r *http.Request) {
	var p map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	p["total"] = p["qty"].(float64) * p["price"].(float64)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p)
}

// load sends requests from conc clients, for d, at most rps per second in
// all (0: as fast as they go); it returns requests/s and latencies.
func load(b *testing.B, url string, conc int, d time.Duration, rps float64) (float64, []time.Duration) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	body := []byte(`{"id": 1, "qty": 3, "price": 2.5}`)
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	var interval time.Duration
	if rps > 0 {
		interval = time.Duration(float64(time.Second) * float64(conc) / rps)
	}
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now()
			var mine []time.Duration
			for time.Since(start) < d {
				if interval > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait) // pacing the load generator, not a test wait
					}
					next = next.Add(interval)
				}
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(n.Load()) / time.Since(start).Seconds(), lat
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

// BenchmarkHTTPFlow reports requests/s of a 2-step JSON flow (transform →
// respond) on the engine's HTTP handler next to a bare net/http handler
// doing the same JSON work, same process, alternating rounds (medians);
// then p50/p99 latency of both at half the flow's peak rate.
func BenchmarkHTTPFlow(b *testing.B) {
	h := startOnB(b, b.TempDir(), "mem://", "mem://", httpBenchFlow)
	flowSrv := httptest.NewServer(h.engine.HTTPHandler())
	defer flowSrv.Close()
	bareSrv := httptest.NewServer(http.HandlerFunc(bareHandler))
	defer bareSrv.Close()
	const conc, d = 16, 2 * time.Second
	var flows, bares []float64
	for round := 0; round < 3; round++ {
		f, _ := load(b, flowSrv.URL+"/price", conc, d, 0)
		x, _ := load(b, bareSrv.URL, conc, d, 0)
		flows, bares = append(flows, f), append(bares, x)
	}
	f, x := median(flows), median(bares)
	half := f / 2
	_, flowLat := load(b, flowSrv.URL+"/price", conc, d, half)
	_, bareLat := load(b, bareSrv.URL, conc, d, half)
	require.NotEmpty(b, flowLat)
	b.ReportMetric(f, "flow_req/s")
	b.ReportMetric(x, "bare_req/s")
	b.ReportMetric(f/x, "ratio")
	b.ReportMetric(float64(pct(flowLat, 0.5).Microseconds())/1000, "flow_p50_ms")
	b.ReportMetric(float64(pct(flowLat, 0.99).Microseconds())/1000, "flow_p99_ms")
	b.ReportMetric(float64(pct(bareLat, 0.99).Microseconds())/1000, "bare_p99_ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("at %.0f req/s (half the flow's peak): flow p50 %v p99 %v; bare p50 %v p99 %v", half,
		pct(flowLat, 0.5), pct(flowLat, 0.99), pct(bareLat, 0.5), pct(bareLat, 0.99))
}
