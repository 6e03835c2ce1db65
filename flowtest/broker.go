package flowtest

import (
	"context"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/brokers"
)

// recorder is a mem:// broker that keeps, in order, every message
// published through it (by runs, dead letters, bridges, timers), so a
// case sees exactly what was published while its input ran: Publish
// returns only once the message is recorded, and a run's outputs are
// published before its end is observed.
type recorder struct {
	brokers.Broker
	streamer brokers.Streamer
	pub      recPublisher
}

type published struct {
	topic string
	msg   *message.Message
}

type recPublisher struct {
	message.Publisher
	mu  *sync.Mutex
	log *[]published
}

func newRecorder(b brokers.Broker) *recorder {
	r := &recorder{Broker: b, pub: recPublisher{Publisher: b.Publisher(), mu: new(sync.Mutex), log: new([]published)}}
	r.streamer, _ = b.(brokers.Streamer)
	return r
}

func (r *recorder) Publisher() message.Publisher { return r.pub }

// Stream implements brokers.Streamer with the mem:// broker's streams.
func (r *recorder) Stream(ctx context.Context, topic, group string, fn func(brokers.Stream) error) error {
	return r.streamer.Stream(ctx, topic, group, fn)
}

func (p recPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	p.mu.Lock()
	for _, m := range msgs {
		*p.log = append(*p.log, published{topic: topic, msg: m})
	}
	p.mu.Unlock()
	return nil
}

// mark is the number of messages published so far.
func (r *recorder) mark() int {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	return len(*r.pub.log)
}

// since returns the messages published to topic after mark.
func (r *recorder) since(mark int, topic string) []*message.Message {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	var out []*message.Message
	for _, p := range (*r.pub.log)[mark:] {
		if p.topic == topic {
			out = append(out, p.msg)
		}
	}
	return out
}

var _ brokers.Streamer = (*recorder)(nil)
