package amqp

import (
	"strconv"
	"sync/atomic"
	"time"

	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// headerPublished carries the publish time in nanoseconds since the epoch,
// unique and increasing among the messages of one publishing process. It
// is the message's position on streams: RabbitMQ's delivery tags start
// again on every channel, a publish time stays with the message when it
// is requeued.
const headerPublished = "sluice_published_ns"

var lastPublished atomic.Int64

// publishedNow returns the current time in nanoseconds, above any value it
// returned before in this process.
func publishedNow() int64 {
	for {
		now, last := time.Now().UnixNano(), lastPublished.Load()
		if now <= last {
			now = last + 1
		}
		if lastPublished.CompareAndSwap(last, now) {
			return now
		}
	}
}

// marshaler is watermill-amqp's default (persistent delivery, metadata as
// headers) plus the publish time (AMQP's timestamp property, in seconds,
// and headerPublished, in nanoseconds).
type marshaler struct{ wamqp.DefaultMarshaler }

func (m marshaler) Marshal(msg *message.Message) (amqp091.Publishing, error) {
	p, err := m.DefaultMarshaler.Marshal(msg)
	if err != nil {
		return p, err
	}
	ns := publishedNow()
	if p.Headers == nil {
		p.Headers = amqp091.Table{}
	}
	p.Headers[headerPublished] = strconv.FormatInt(ns, 10)
	p.Timestamp = time.Unix(0, ns).UTC()
	return p, nil
}

// Unmarshal reads a delivery as a message; the publish time header is not
// part of the message's metadata.
func (m marshaler) Unmarshal(d amqp091.Delivery) (*message.Message, error) {
	msg, err := m.DefaultMarshaler.Unmarshal(d)
	if err != nil {
		return nil, err
	}
	delete(msg.Metadata, headerPublished)
	return msg, nil
}

// published returns a delivery's publish time in nanoseconds: the header
// Sluice sets, else the timestamp property (seconds), else 0.
func published(d amqp091.Delivery) int64 {
	if s, ok := d.Headers[headerPublished].(string); ok {
		if ns, err := strconv.ParseInt(s, 10, 64); err == nil {
			return ns
		}
	}
	if !d.Timestamp.IsZero() {
		return d.Timestamp.UnixNano()
	}
	return 0
}

var _ wamqp.Marshaler = marshaler{}
