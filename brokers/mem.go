package brokers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

func init() { Register("mem", openMem) }

// memBroker is Watermill's GoChannel: in process, nothing survives a
// restart, and every subscription receives every message (no consumer
// groups). Use it for tests and throwaway runs. Streams read their own
// queue (memQueue); the GoChannel carries only the topics somebody
// subscribed to through Subscriber (routed), so a message of a streamed
// topic is neither copied into it nor, with persistent=true, kept twice.
type memBroker struct {
	ch    *gochannel.GoChannel
	pub   memPublisher
	queue *memQueue // what streams read
}

// openMem accepts mem://?buffer=N&persistent=true&max_message_bytes=N:
// buffer is each subscription's output channel size (default 0);
// persistent keeps every message in memory for subscriptions made later
// (memory grows without bound, so only for tests).
func openMem(_ context.Context, u *url.URL, logger watermill.LoggerAdapter) (Broker, error) {
	q := u.Query()
	var buf int64
	if s := q.Get("buffer"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("buffer must be a non-negative integer, not %q", s)
		}
		buf = n
	}
	persistent := false
	if s := q.Get("persistent"); s != "" {
		var err error
		if persistent, err = strconv.ParseBool(s); err != nil {
			return nil, fmt.Errorf("persistent must be true or false, not %q", s)
		}
	}
	limit, err := ParseMaxMessageBytes(q)
	if err != nil {
		return nil, err
	}
	ch := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: buf, Persistent: persistent}, logger)
	mq := &memQueue{persistent: persistent, topics: map[string]*memTopic{}}
	return &memBroker{ch: ch, pub: memPublisher{ch, limit, mq}, queue: mq}, nil
}

func (b *memBroker) Publisher() message.Publisher { return b.pub }
func (b *memBroker) Subscriber(string) (message.Subscriber, error) {
	return memSubscriber{b.ch, b.queue}, nil
}

// memPublisher checks topics and sizes before the GoChannel: every message
// in memory has passed the limit, so consumers need no check.
type memPublisher struct {
	ch    *gochannel.GoChannel
	limit int64
	queue *memQueue
}

func (p memPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := CheckPublish(topic, p.limit, msgs); err != nil {
		return err
	}
	routed, err := p.queue.publish(topic, msgs)
	if err != nil || !routed {
		return err // closed, or no subscription through the GoChannel: streams have them
	}
	return p.ch.Publish(topic, msgs...)
}

// Close closes the broker, as closing the GoChannel itself did.
func (p memPublisher) Close() error     { p.queue.markClosed(); return p.ch.Close() }
func (b *memBroker) Features() Features { return Features{Ordered: true} }
func (b *memBroker) Close() error       { b.queue.markClosed(); return b.ch.Close() }

// errMemClosed is what publishing to a closed mem:// broker returns.
var errMemClosed = errors.New("mem broker closed")

// memSubscriber shares the broker's GoChannel; closing it ends nothing, as
// its subscriptions end with their contexts and the channel with the broker.
type memSubscriber struct {
	ch    *gochannel.GoChannel
	queue *memQueue
}

func (s memSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	if err := s.queue.route(topic, s.ch); err != nil {
		return nil, err
	}
	return s.ch.Subscribe(ctx, topic)
}
func (memSubscriber) Close() error { return nil }

// Stream implements Streamer for tests and throwaway runs. Streams read
// their own queue rather than a GoChannel subscription (which costs a
// goroutine hand-off and a context per message): each stream gets every
// message published to the topic after it started (with persistent=true,
// every message since the broker opened), in publish order. Nothing is
// durable, so Commit has nothing to store; offsets count the stream's
// messages from 1 and timestamps are the publish times.
func (b *memBroker) Stream(ctx context.Context, topic, _ string, fn func(Stream) error) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := b.queue.open(topic)
	defer b.queue.close(topic, q)
	s := &memStream{msgs: make(chan *message.Message, 256), ctx: ctx}
	go func() {
		defer close(s.msgs)
		var n int64
		for {
			batch, ok := q.take(ctx)
			if !ok {
				return
			}
			for _, p := range batch {
				n++
				m := p.msg.Copy() // positions live in the message: one copy per stream
				SetPosition(m, 0, n, p.at)
				select {
				case s.msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	err := fn(s)
	cancel()
	for range s.msgs {
	}
	return err
}

// memQueue hands published messages to the streams of their topic.
type memQueue struct {
	persistent bool
	mu         sync.Mutex
	topics     map[string]*memTopic
	closed     bool // the broker was closed: nothing is published any more
}

// markClosed refuses what is published from now on.
func (q *memQueue) markClosed() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

type memTopic struct {
	log     []memPublished // every message, when persistent
	streams []*memStreamQueue
	routed  bool // published to the GoChannel too: somebody subscribed there
}

type memPublished struct {
	msg *message.Message
	at  time.Time
}

// memStreamQueue is one stream's messages not yet taken.
type memStreamQueue struct {
	mu   sync.Mutex
	msgs []memPublished
	wake chan struct{} // a token when msgs may have grown
}

func (q *memQueue) topic(name string) *memTopic {
	t := q.topics[name]
	if t == nil {
		t = &memTopic{}
		q.topics[name] = t
	}
	return t
}

// publish hands msgs to the topic's streams (and keeps them, when
// persistent), and reports whether they go to the GoChannel as well; it
// fails once the broker is closed.
func (q *memQueue) publish(topic string, msgs []*message.Message) (routed bool, err error) {
	now := time.Now().UTC()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false, errMemClosed
	}
	t := q.topics[topic]
	if t == nil && !q.persistent {
		return false, nil // nobody streams it or subscribed to it, and nothing is kept
	}
	t = q.topic(topic)
	for _, m := range msgs {
		p := memPublished{msg: m, at: now}
		if q.persistent {
			t.log = append(t.log, p)
		}
		for _, s := range t.streams {
			s.mu.Lock()
			s.msgs = append(s.msgs, p)
			s.mu.Unlock()
		}
	}
	for _, s := range t.streams {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return t.routed, nil
}

// route makes the topic's messages go to the GoChannel from now on, for
// a subscription about to be made there; with persistent=true the
// messages kept so far go first (the GoChannel keeps them for its
// subscriptions, as it keeps what follows). Publishing waits meanwhile,
// so the order holds.
func (q *memQueue) route(topic string, ch *gochannel.GoChannel) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.topic(topic)
	if t.routed {
		return nil
	}
	t.routed = true
	if len(t.log) == 0 {
		return nil
	}
	kept := make([]*message.Message, len(t.log))
	for i, p := range t.log {
		kept[i] = p.msg
	}
	return ch.Publish(topic, kept...)
}

// open registers a stream of topic, starting with the kept messages.
func (q *memQueue) open(topic string) *memStreamQueue {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.topic(topic)
	s := &memStreamQueue{wake: make(chan struct{}, 1), msgs: append([]memPublished(nil), t.log...)}
	t.streams = append(t.streams, s)
	return s
}

func (q *memQueue) close(topic string, s *memStreamQueue) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.topics[topic]
	for i, x := range t.streams {
		if x == s {
			t.streams = append(t.streams[:i:i], t.streams[i+1:]...)
			break
		}
	}
}

// take waits for messages and returns them all, or false once ctx ends.
func (s *memStreamQueue) take(ctx context.Context) ([]memPublished, bool) {
	for {
		s.mu.Lock()
		batch := s.msgs
		s.msgs = nil
		s.mu.Unlock()
		if len(batch) > 0 {
			return batch, true
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, false
		}
	}
}

type memStream struct {
	msgs chan *message.Message
	ctx  context.Context
}

func (s *memStream) Context() context.Context { return s.ctx }

func (s *memStream) Partition() int32                               { return 0 }
func (s *memStream) Messages() <-chan *message.Message              { return s.msgs }
func (s *memStream) Commit(context.Context, *message.Message) error { return nil }

var _ Streamer = (*memBroker)(nil)
