//go:build race

package image

// raceEnabled: built with the race detector.
const raceEnabled = true
