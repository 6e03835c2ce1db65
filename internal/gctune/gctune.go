// Package gctune paces the garbage collector of a long-running Sluice
// process by a heap target.
//
// An event pipeline allocates fast (every message is decoded, run and
// recorded) while keeping little alive between messages. With Go's
// default pace (GOGC=100: collect once the heap is twice what was live),
// a few megabytes live mean a collection every few thousand messages: the
// collector took about a quarter of the engine's CPU time in `make
// bench-peer`. A heap target lets the heap grow to that size before
// collecting, as Uber's and ByteDance's GC tuners do; this drives
// ByteDance's (github.com/bytedance/gopkg/util/gctuner). After each
// collection the GC percent is set so that the next one starts at the
// target, between 100 (Go's default: a live heap over half the target is
// collected as often as without it, never more) and 500 (a small one is
// collected at six times its size at most).
//
// The heap then peaks near the larger of the target and twice what is
// live. In a process whose memory is limited (a container's cgroup
// memory.max, read by github.com/KimMachineGun/automemlimit, or
// GOMEMLIMIT) the target is at most a quarter of the limit: the rest is
// for what is live, cgo's memory (SQLite's caches, image decoders) and
// the stacks. An operator's GOGC (the environment variable) wins: the
// target is then not applied.
package gctune

import (
	"math"
	"os"
	"runtime/debug"
	"sync"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/bytedance/gopkg/util/gctuner"
)

// DefaultTarget is the heap size `sluice run` lets the heap grow to
// before collecting (--gc-target).
const DefaultTarget = 256 << 20

// Bounds of the GC percent the target sets.
const (
	minPercent = 100
	maxPercent = 500
)

// limitShare is the part of a memory limit the target may take.
const limitShare = 4 // a quarter

var (
	mu      sync.Mutex // serialises Start: the tuner is one per process
	started bool       // the tuner runs (it is never stopped)
	// memoryLimit is the process's memory limit in bytes, 0 for none:
	// the smaller of its cgroup's and GOMEMLIMIT. A variable for tests.
	memoryLimit = func() uint64 {
		limit := uint64(0)
		if l, err := memlimit.FromCgroup(); err == nil && l > 0 {
			limit = l
		}
		if g := debug.SetMemoryLimit(-1); g > 0 && g < math.MaxInt64 && (limit == 0 || uint64(g) < limit) {
			limit = uint64(g)
		}
		return limit
	}
)

// Target is the heap target Start applies for target: target, or a
// quarter of the process's memory limit when that is less.
func Target(target uint64) uint64 {
	if limit := memoryLimit(); limit > 0 && target > limit/limitShare {
		return limit / limitShare
	}
	return target
}

// Start paces the collector by a heap target for the rest of the process
// (Target(target) bytes); a later call changes the target. 0 means Go's
// default pace: nothing is started, or a running tuner keeps the percent
// at 100 from the next collection on. It returns the target applied: 0
// for 0, and when GOGC is set in the environment (then it does nothing).
func Start(target uint64) uint64 {
	if _, set := os.LookupEnv("GOGC"); set {
		return 0
	}
	target = Target(target)
	mu.Lock()
	defer mu.Unlock()
	switch {
	case !started && target == 0:
		return 0
	case !started:
		// The bounds are read by the tuner's callback without
		// synchronisation: set before it starts, and never again.
		gctuner.SetMinGCPercent(minPercent)
		gctuner.SetMaxGCPercent(maxPercent)
		started = true
	case target == 0:
		// The tuner cannot be stopped without a race with a callback
		// under way (which would set a percent after ours): a target of
		// one byte makes every callback set the minimum, 100.
		gctuner.Tuning(1)
		return 0
	}
	gctuner.Tuning(target)
	return target
}
