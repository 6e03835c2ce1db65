package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
	if Start(DefaultTarget) == 0 {
		t.Skip("GOGC is set in the environment: the target is not applied (TestGOGCWins covers that)")
	}
	t.Cleanup(func() { Start(0) })
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
	if got := Start(0); got != 0 {
		t.Fatalf("Start(0) applied a target of %d", got)
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
	if got := Start(DefaultTarget); got != 0 {
		t.Fatalf("Start applied a target of %d although GOGC is set", got)
	}
}

// In a process whose memory is limited the target is at most a quarter
// of the limit: GOMEMLIMIT's, or the cgroup's (memoryLimit reads both).
func TestTargetFitsTheMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	if l := memoryLimit(); l > 0 && l < 4*DefaultTarget {
		t.Skipf("this process's memory is limited to %d bytes already", l)
	}
	assert.Equal(t, uint64(DefaultTarget), Target(DefaultTarget), "no limit below four times the target")
	debug.SetMemoryLimit(400 << 20) // GOMEMLIMIT=400MiB
	assert.Equal(t, uint64(100<<20), Target(DefaultTarget))
	assert.Equal(t, uint64(50<<20), Target(50<<20), "a target under a quarter of the limit is kept")

	was := memoryLimit
	t.Cleanup(func() { memoryLimit = was })
	memoryLimit = func() uint64 { return 512 << 20 } // a container's memory.max
	assert.Equal(t, uint64(128<<20), Target(DefaultTarget))
}
