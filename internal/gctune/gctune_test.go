package gctune

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// gcPercent reads the GC percent in force.
func gcPercent() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitPercent collects until the GC percent satisfies ok (the tuner sets
// it after a collection, from the finalizer goroutine), and fails after
// 10 s of collections without.
func waitPercent(t *testing.T, ok func(uint64) bool) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		p := gcPercent()
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("the GC percent stayed %d", p)
		}
		runtime.Gosched()
	}
}

func TestTargetPacesTheCollector(t *testing.T) {
	if !Start(DefaultTarget) {
		t.Skip("GOGC is set in the environment: the target is not applied (TestGOGCWins covers that)")
	}
	t.Cleanup(func() { Start(0) })
	if p := gcPercent(); p != 100 {
		t.Fatalf("GC percent %d before any collection, want Go's default 100", p)
	}
	// This test's heap is a few megabytes, far below the target: the
	// percent goes to its ceiling.
	if p := waitPercent(t, func(p uint64) bool { return p > 100 }); p != maxPercent {
		t.Fatalf("GC percent %d with a small heap and a %d MiB target, want %d", p, DefaultTarget>>20, maxPercent)
	}

	// A live heap over half the target: Go's default pace, never faster.
	live := make([][]byte, 0, 200)
	for range 200 {
		live = append(live, make([]byte, 1<<20))
	}
	Start(64 << 20)
	waitPercent(t, func(p uint64) bool { return p == minPercent })
	runtime.KeepAlive(live)

	// Off: Go's default again, whatever the heap.
	live = nil
	if Start(0) {
		t.Fatal("Start(0) reported a target applied")
	}
	waitPercent(t, func(p uint64) bool { return p == 100 })
	for range 3 {
		runtime.GC()
		if p := gcPercent(); p != 100 {
			t.Fatalf("GC percent %d after the target was turned off, want 100", p)
		}
	}
}

func TestGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "100")
	if Start(DefaultTarget) {
		t.Fatal("Start applied a target although GOGC is set")
	}
}
