package brokers

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Streamer is implemented by brokers that hand a consumer group's messages
// to a consumer that commits its position itself, many messages at a time:
// batch consumers such as the archive node, which must not ack a message
// before the object holding it is written, and cannot wait for one ack per
// message (Watermill subscribers deliver the next message only after the
// previous one's ack).
//
// Stream consumes topic as group until ctx ends. For each partition this
// process is given, it calls fn in a goroutine of its own with that
// partition's Stream; fn returns when the stream's Messages channel is
// closed (ctx ended, or the partition was given to another member), after
// committing what it finished. Stream returns once every fn has returned,
// with the first error one returned (a partition whose fn failed is given up
// by this process and its uncommitted messages are delivered again).
type Streamer interface {
	Stream(ctx context.Context, topic, group string, fn func(Stream) error) error
}

// Stream is one partition's messages, in order, for one consumer group.
type Stream interface {
	// Partition is the partition's number (0 on brokers without partitions).
	Partition() int32
	// Context is done when the stream ends: the consumer is stopping, or
	// the partition is being given to another member (which, on Kafka,
	// starts from the last commit once fn returns or the rebalance times
	// out). Work still writing on behalf of the stream should stop soon
	// after.
	Context() context.Context
	// Messages delivers the partition's messages after the group's
	// committed position, in order. Messages need no Ack: Commit is the ack.
	// Each message's Position and Timestamp are known.
	Messages() <-chan *message.Message
	// Commit records that msg and every message before it in this stream
	// are consumed: the group will not be given them again. It may be
	// called after Messages closed, until fn returns.
	Commit(ctx context.Context, msg *message.Message) error
}

// MetaUnreadable is set on a streamed message whose stored metadata could
// not be read, with the reason; the message is delivered without it.
const MetaUnreadable = "sluice_unreadable_metadata"

// position is where a consumed message was read; brokers store it in the
// message's context, not its metadata: metadata travels with a message that
// is published again (a dead letter, a replay), and a position read from it
// would be another broker's.
type position struct {
	partition int32
	offset    int64
	time      time.Time
}

type positionKey struct{}

// SetPosition records where a consumed message was read: its partition,
// its offset in the partition, and when the broker stored it (zero when
// unknown). Brokers call it on every message their streams deliver, and
// on messages their subscribers deliver when they have positions (Kafka);
// Position and Timestamp read it back. It replaces the message's context
// with one derived from it.
func SetPosition(msg *message.Message, partition int32, offset int64, stored time.Time) {
	msg.SetContext(context.WithValue(msg.Context(), positionKey{}, position{partition: partition, offset: offset, time: stored}))
}

// Position reports where a consumed message sits in its broker: its
// partition and offset (Kafka, and streams of the embedded queue). ok is
// false for brokers without positions (the message id identifies those).
func Position(msg *message.Message) (partition int32, offset int64, ok bool) {
	p, ok := msg.Context().Value(positionKey{}).(position)
	return p.partition, p.offset, ok
}

// Timestamp reports when the broker stored a consumed message (the Kafka
// record's timestamp, the embedded queue's insert time), when it is known.
func Timestamp(msg *message.Message) (time.Time, bool) {
	p, ok := msg.Context().Value(positionKey{}).(position)
	return p.time, ok && !p.time.IsZero()
}
