// Package amqp is the RabbitMQ (AMQP 0-9-1) broker, on watermill-amqp.
// Importing it registers the "amqp" and "amqps" URL schemes:
//
//	amqp://USER:PASSWORD@HOST:5672/VHOST?prefetch=1&stream_prefetch=10000
//
// Topology: each topic is a durable fanout exchange of the topic's name;
// each consumer group is a durable queue "<topic>.<group>" bound to it, so
// every group (flow) gets every message and the members of one group
// compete for the messages of its queue. Messages are persistent and
// published with confirms (Publish returns once RabbitMQ has them);
// consumers ack manually after the handler acks, and a nack requeues the
// message (Sluice dead-letters failed runs itself, then acks).
//
// Concurrency: Partitions(n) is n consumers of the group's queue, each on
// its own channel with `prefetch` unacknowledged messages (1 by default),
// so n messages are processed at once. RabbitMQ keeps no partition keys:
// with n > 1, messages with the same partition_key may be processed out of
// order.
//
// Batch flows stream the group's queue with up to stream_prefetch
// (default 10000, the archive node's default max_count) unacknowledged
// messages: a batch cannot hold more, and is written when its max_wait
// passes instead.
//
// A queue only holds messages published after it was first declared: a
// new flow (group) does not see the topic's earlier messages, unlike on
// sqlite:// and kafka://.
package amqp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/brokers"
)

func init() {
	brokers.Register("amqp", open)
	brokers.Register("amqps", open)
}

// Broker is an AMQP connection shared by the publisher and every
// subscriber it hands out.
type Broker struct {
	uri            string // without Sluice's own parameters
	prefetch       int
	streamPrefetch int
	logger         watermill.LoggerAdapter
	conn           *wamqp.ConnectionWrapper
	pub            *wamqp.Publisher

	mu     sync.Mutex
	subs   []*wamqp.Subscriber
	closed bool
}

func open(_ context.Context, u *url.URL, logger watermill.LoggerAdapter) (brokers.Broker, error) {
	if u.Host == "" {
		return nil, errors.New("amqp url needs a host, e.g. amqp://guest:guest@localhost:5672/")
	}
	q := u.Query()
	b := &Broker{prefetch: 1, streamPrefetch: 10000, logger: logger}
	for name, dst := range map[string]*int{"prefetch": &b.prefetch, "stream_prefetch": &b.streamPrefetch} {
		if s := q.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%s must be an integer from 1 to 65535, not %q", name, s)
			}
			*dst = n
		}
		q.Del(name)
	}
	clean := *u
	clean.RawQuery = q.Encode()
	b.uri = clean.String()
	conn, err := wamqp.NewConnection(wamqp.ConnectionConfig{AmqpURI: b.uri}, logger)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redacted(u), err)
	}
	b.conn = conn
	pub, err := wamqp.NewPublisherWithConnection(b.config(""), logger, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	b.pub = pub
	return b, nil
}

// redacted is the URL without its password, for messages.
func redacted(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.Redacted()
}

// QueueName is the queue of a consumer group on a topic.
func QueueName(topic, group string) string {
	if group == "" {
		return topic
	}
	return topic + "." + group
}

// config is watermill-amqp's durable pub/sub setup for one group.
func (b *Broker) config(group string) wamqp.Config {
	c := wamqp.NewDurablePubSubConfig(b.uri, func(topic string) string { return QueueName(topic, group) })
	c.Publish.ConfirmDelivery = true
	c.Publish.ChannelPoolSize = 4
	c.Consume.Qos.PrefetchCount = b.prefetch
	c.Marshaler = marshaler{}
	return c
}

// Publisher publishes with confirms; it is shared (Close the broker).
func (b *Broker) Publisher() message.Publisher { return publisher{b.pub} }

// Subscriber consumes as group: from the group's queue.
func (b *Broker) Subscriber(group string) (message.Subscriber, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("amqp broker is closed")
	}
	s, err := wamqp.NewSubscriberWithConnection(b.config(group), b.logger, b.conn)
	if err != nil {
		return nil, err
	}
	b.subs = append(b.subs, s)
	return s, nil
}

// Partitions implements brokers.Partitioner: n competing consumers of the
// group's queue (see the package documentation on order).
func (b *Broker) Partitions(_ context.Context, _, group string, n int) ([]message.Subscriber, error) {
	if n < 1 {
		return nil, fmt.Errorf("partitions must be at least 1, not %d", n)
	}
	subs := make([]message.Subscriber, n)
	for i := range subs {
		s, err := b.Subscriber(group)
		if err != nil {
			return nil, err
		}
		subs[i] = s
	}
	return subs, nil
}

// Features: groups and durability; order holds for one consumer of a
// queue, though a requeued message comes back behind later ones.
func (b *Broker) Features() brokers.Features {
	return brokers.Features{ConsumerGroups: true, Persistent: true, Ordered: false}
}

// Close closes the subscribers, the publisher and the connection.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.mu.Unlock()
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Close())
	}
	errs = append(errs, b.pub.Close(), b.conn.Close())
	return errors.Join(errs...)
}

// publisher keeps callers from closing the shared publisher.
type publisher struct{ p *wamqp.Publisher }

func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.p.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	return nil
}
func (publisher) Close() error { return nil }

var (
	_ brokers.Partitioner = (*Broker)(nil)
	_ message.Publisher   = publisher{}
)

// validTopic keeps exchange and queue names printable and short.
func validTopic(topic string) error {
	if topic == "" || len(topic) > 200 || strings.ContainsAny(topic, " \t\r\n") {
		return fmt.Errorf("topic %q: want 1 to 200 characters without spaces", topic)
	}
	return nil
}
