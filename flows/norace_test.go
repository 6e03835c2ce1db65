//go:build !race

package flows_test

// raceSlowdown scales margins of timing bounds: 1 without the race
// detector.
const raceSlowdown = 1
