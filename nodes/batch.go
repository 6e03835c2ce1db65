package nodes

import (
	"context"
	"time"
)

// Batcher is implemented by nodes that take a flow's messages a batch at a
// time (archive). Such a node is the last step of its flow. The engine then
// consumes the trigger topic as ordered per-partition streams, runs the
// steps before the batcher on each message, adds what reaches it to the
// partition's open batch, and flushes the batch when one of its limits is
// reached, when the stream closes (shutdown, rebalance) or when the limit
// of time since its first message passes. A partition's position is
// committed only after its batch's Flush returned nil, and one batch per
// partition is flushed at a time, in order.
//
// A Batcher's Process is never called.
type Batcher interface {
	Node
	BatchLimits() BatchLimits
	// NewBatch opens a batch that starts with the message start describes.
	NewBatch(start BatchStart) Batch
}

// BatchLimits bound a batch: it is flushed as soon as one is reached.
type BatchLimits struct {
	Count int           // records
	Bytes int64         // bytes added, before any compression
	Wait  time.Duration // since the first record was added
}

// BatchStart identifies a batch by its first message. After a crash the
// batch is consumed again from the same first message, possibly with more
// or fewer records after it: what the batch writes must be named from
// BatchStart alone, so the rewrite replaces the first attempt's output.
type BatchStart struct {
	Flow      string
	Topic     string
	Partition int32
	Offset    int64     // of the first message
	ID        string    // the first message's id
	Time      time.Time // when the broker stored the first message (UTC)
	// Payload and Meta are the first message as it arrived.
	Payload []byte
	Meta    map[string]string
}

// Batch collects records and writes them at once. A Batch is used by one
// goroutine at a time.
type Batch interface {
	// Add adds one record: the message's payload, or the JSON the steps
	// before made of it. A permanent error refuses that record alone (its
	// message is dead-lettered) and leaves the batch as it was.
	Add(record []byte) error
	// Size is the number of bytes added so far.
	Size() int64
	// Flush writes the batch. After an error it may be called again and
	// must write the same thing.
	Flush(ctx context.Context) (Written, error)
}

// Written describes what a batch wrote, for the run record.
type Written struct {
	Location string // such as "bucket/key"
	Bytes    int64
}
