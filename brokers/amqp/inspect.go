package amqp

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice/brokers"
)

// ErrNoTopicList says why `sluice topics` cannot list an AMQP broker.
var ErrNoTopicList = errors.New("amqp:// cannot list topics: AMQP has no way to enumerate exchanges and queues; use `rabbitmqctl list_queues name messages consumers` (each queue is <topic>.<group>, messages its lag) or RabbitMQ's management plugin")

// ErrNoHistory is what Tail answers for --from-beginning.
var ErrNoHistory = errors.New("amqp:// keeps no history to tail from the beginning: RabbitMQ removes a message once every queue has consumed it; tail without --from-beginning shows messages as they are published")

// Topics implements brokers.Inspector: see ErrNoTopicList.
func (b *Broker) Topics(context.Context) ([]brokers.TopicInfo, error) { return nil, ErrNoTopicList }

// Tail implements brokers.Inspector with a temporary queue of its own
// (server-named, exclusive, deleted when the tail ends) bound to the
// topic's exchange: it receives a copy of each message published from now
// on and takes nothing from the groups' queues. A topic whose exchange does
// not exist yet is waited for. Offsets are unknown (-1); the time is when
// the message was published.
func (b *Broker) Tail(ctx context.Context, topic string, fromBeginning bool, fn func(brokers.Record) error) error {
	if fromBeginning {
		return ErrNoHistory
	}
	if err := validTopic(topic); err != nil {
		return err
	}
	conn, err := amqp091.Dial(b.uri)
	if err != nil {
		return fmt.Errorf("tail %s: connect: %w", topic, err)
	}
	defer conn.Close()
	var ch *amqp091.Channel
	for {
		// A passive declare fails (and closes its channel) while the
		// exchange does not exist: try on a fresh channel until it does.
		if ch, err = conn.Channel(); err != nil {
			return fmt.Errorf("tail %s: %w", topic, err)
		}
		err = ch.ExchangeDeclarePassive(topic, "fanout", true, false, false, false, nil)
		if err == nil {
			break
		}
		var aerr *amqp091.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp091.NotFound {
			return fmt.Errorf("tail %s: %w", topic, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	defer ch.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("tail %s: declare a temporary queue: %w", topic, err)
	}
	if err := ch.QueueBind(q.Name, "", topic, false, nil); err != nil {
		return fmt.Errorf("tail %s: bind: %w", topic, err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, q.Name, "sluice-tail", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("tail %s: consume: %w", topic, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("tail %s: the connection closed", topic)
			}
			msg, err := marshaler{}.Unmarshal(d)
			if err != nil {
				return fmt.Errorf("tail %s: %w", topic, err)
			}
			if err := fn(brokers.Record{Topic: topic, Offset: -1, Time: d.Timestamp.UTC(), Message: msg}); err != nil {
				return err
			}
		}
	}
}

var _ brokers.Inspector = (*Broker)(nil)
