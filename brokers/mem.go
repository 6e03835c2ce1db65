package brokers

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

func init() { Register("mem", openMem) }

// memBroker is Watermill's GoChannel: in process, nothing survives a
// restart, and every subscription receives every message (no consumer
// groups). Use it for tests and throwaway runs.
type memBroker struct {
	ch  *gochannel.GoChannel
	pub memPublisher
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
	return &memBroker{ch: ch, pub: memPublisher{ch, limit}}, nil
}

func (b *memBroker) Publisher() message.Publisher                  { return b.pub }
func (b *memBroker) Subscriber(string) (message.Subscriber, error) { return memSubscriber{b.ch}, nil }

// memPublisher checks topics and sizes before the GoChannel: every message
// in memory has passed the limit, so consumers need no check.
type memPublisher struct {
	ch    *gochannel.GoChannel
	limit int64
}

func (p memPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := CheckPublish(topic, p.limit, msgs); err != nil {
		return err
	}
	return p.ch.Publish(topic, msgs...)
}

// Close closes the GoChannel, as closing the GoChannel itself did.
func (p memPublisher) Close() error     { return p.ch.Close() }
func (b *memBroker) Features() Features { return Features{Ordered: true} }
func (b *memBroker) Close() error       { return b.ch.Close() }

// memSubscriber shares the broker's GoChannel; closing it ends nothing, as
// its subscriptions end with their contexts and the channel with the broker.
type memSubscriber struct{ ch *gochannel.GoChannel }

func (s memSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	return s.ch.Subscribe(ctx, topic)
}
func (memSubscriber) Close() error { return nil }

// Stream implements Streamer for tests and throwaway runs: nothing is
// durable here, so each message is acked as it is handed over, offsets
// count the stream's messages from 1, timestamps are the receive times,
// and Commit has nothing to store.
func (b *memBroker) Stream(ctx context.Context, topic, _ string, fn func(Stream) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in, err := b.ch.Subscribe(ctx, topic)
	if err != nil {
		return err
	}
	s := &memStream{msgs: make(chan *message.Message), ctx: ctx}
	go func() {
		defer close(s.msgs)
		var n int64
		for m := range in {
			n++
			SetPosition(m, 0, n, time.Now().UTC())
			m.Ack()
			select {
			case s.msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	err = fn(s)
	cancel()
	for range s.msgs {
	}
	return err
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
