//go:build race

package flows_test

// raceSlowdown scales margins of timing bounds: the race detector makes
// everything several times slower.
const raceSlowdown = 5
