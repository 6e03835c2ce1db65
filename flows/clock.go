package flows

import (
	"crypto/rand"
	"time"

	"github.com/oklog/ulid"
)

// Clock readings cost more than most of a quick step's work on virtual
// machines (time.Now ~90 ns, time.Since ~50 ns measured here), and a run
// of three steps took ~25 of them. The run path reads the clock once per
// boundary and shares what it read: a run's id takes its start time, a
// step's end is the next step's start (mono).

// newRunID is a run's id: a ULID of the run's start time (ids sort by
// start), with 80 random bits from crypto/rand, as watermill.NewULID
// makes them but without reading the clock again.
func newRunID(start time.Time) string {
	return ulid.MustNew(ulid.Timestamp(start), rand.Reader).String()
}

// monoEpoch is the reference of mono.
var monoEpoch = time.Now()

// mono reads the monotonic clock alone (time.Now reads the wall clock
// too): the time since monoEpoch. Differences of two readings are
// durations.
func mono() time.Duration { return time.Since(monoEpoch) }
