package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice/brokers"
)

// declare sets up the topic's exchange and the group's queue, bound to it,
// as watermill-amqp's subscribers do.
func declare(ch *amqp091.Channel, topic, group string) (string, error) {
	if err := validTopic(topic); err != nil {
		return "", err
	}
	if err := ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
		return "", fmt.Errorf("declare exchange %s: %w", topic, err)
	}
	q := QueueName(topic, group)
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return "", fmt.Errorf("declare queue %s: %w", q, err)
	}
	if err := ch.QueueBind(q, "", topic, false, nil); err != nil {
		return "", fmt.Errorf("bind queue %s to %s: %w", q, topic, err)
	}
	return q, nil
}

// InitializeGroup implements brokers.GroupInitializer: it declares the
// group's queue, which from then on keeps the topic's messages for it.
func (b *Broker) InitializeGroup(_ context.Context, topic, group string) error {
	conn, err := amqp091.Dial(b.uri)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = declare(ch, topic, group)
	return err
}

// Stream implements brokers.Streamer on the group's queue: one stream
// (partition 0) on a channel of its own that holds up to stream_prefetch
// unacknowledged messages (the most a batch can hold: a batch needing more
// is written when its max_wait passes). Commit acks every delivery up to
// the message at once (AMQP's multiple ack); what is not committed when
// the stream ends is requeued by RabbitMQ, in its place, for the group's
// next consumer.
//
// A message's position (offset) is its publish time in nanoseconds, set by
// Sluice's publisher: unique and increasing among one process's messages,
// and the same when the message is requeued and delivered again, so a
// batch rewritten after a crash gets the same object key. With several
// publishing processes, messages of one stream are in queue order, which
// may differ from the order of their offsets. Messages published by other
// programs have their timestamp property (seconds) as offset, or 0.
func (b *Broker) Stream(ctx context.Context, topic, group string, fn func(brokers.Stream) error) error {
	conn, err := amqp091.Dial(b.uri)
	if err != nil {
		return fmt.Errorf("stream %s: connect: %w", topic, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("stream %s: %w", topic, err)
	}
	defer ch.Close() // requeues what was not acked
	if err := ch.Qos(b.streamPrefetch, 0, false); err != nil {
		return fmt.Errorf("stream %s: prefetch: %w", topic, err)
	}
	q, err := declare(ch, topic, group)
	if err != nil {
		return fmt.Errorf("stream %s: %w", topic, err)
	}
	const tag = "sluice-stream"
	deliveries, err := ch.Consume(q, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("stream %s: consume %s: %w", topic, q, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &stream{ch: ch, ctx: sctx, msgs: make(chan *message.Message), tags: map[*message.Message]uint64{}}
	var lost error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(s.msgs)
		for {
			select {
			case <-sctx.Done():
				return
			case d, ok := <-deliveries:
				if !ok {
					lost = errors.New("the connection to RabbitMQ closed")
					cancel()
					return
				}
				msg, err := marshaler{}.Unmarshal(d)
				if err != nil {
					msg = message.NewMessage(d.MessageId, d.Body)
					msg.Metadata = message.Metadata{brokers.MetaUnreadable: err.Error()}
				}
				ns := published(d)
				s.mu.Lock()
				s.tags[msg] = d.DeliveryTag
				s.mu.Unlock()
				brokers.SetPosition(msg, 0, ns, time.Unix(0, ns).UTC())
				select {
				case s.msgs <- msg:
				case <-sctx.Done():
					return
				}
			}
		}
	})
	err = fn(s)
	cancel()
	_ = ch.Cancel(tag, false) // no more deliveries; those held are requeued at close
	for range s.msgs {
	}
	wg.Wait()
	if err == nil && lost != nil && ctx.Err() == nil {
		err = fmt.Errorf("stream %s: %w", topic, lost)
	}
	return err
}

type stream struct {
	ch   *amqp091.Channel
	ctx  context.Context
	msgs chan *message.Message

	mu   sync.Mutex
	tags map[*message.Message]uint64 // delivered, not yet committed
}

func (s *stream) Partition() int32                  { return 0 }
func (s *stream) Context() context.Context          { return s.ctx }
func (s *stream) Messages() <-chan *message.Message { return s.msgs }

// Commit acks msg and every message before it on this stream's channel.
func (s *stream) Commit(_ context.Context, msg *message.Message) error {
	s.mu.Lock()
	tag, ok := s.tags[msg]
	if ok {
		// Acked with it: the messages delivered before it.
		for m, t := range s.tags {
			if t <= tag {
				delete(s.tags, m)
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("commit: message %s is not an uncommitted message of this stream", msg.UUID)
	}
	if err := s.ch.Ack(tag, true); err != nil {
		return fmt.Errorf("commit %s: %w", msg.UUID, err)
	}
	return nil
}

var (
	_ brokers.Streamer         = (*Broker)(nil)
	_ brokers.GroupInitializer = (*Broker)(nil)
)
