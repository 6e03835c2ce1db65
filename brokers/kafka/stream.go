package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/brokers"
)

// Stream implements brokers.Streamer with a sarama consumer group of its own: each
// claimed partition is a Stream, Commit marks and commits the offset after
// the message. Offsets are committed only by Commit (auto-commit is off).
// When Kafka moves a partition to another member, its Messages channel
// closes and the rebalance waits (up to the rebalance timeout, 30s) for fn
// to flush and commit, so the next owner starts where this one stopped.
func (b *broker) Stream(ctx context.Context, topic, group string, fn func(brokers.Stream) error) error {
	if err := brokers.ValidateTopic(topic); err != nil {
		return err
	}
	if err := b.ensureTopic(topic, b.cfg.partitions); err != nil {
		return err
	}
	c := b.consumer()
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Group.Rebalance.Timeout = 30 * time.Second
	c.ChannelBufferSize = 4096
	cg, err := sarama.NewConsumerGroup(b.brokers, group, c)
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", group, err)
	}
	h := &streamHandler{fn: fn, logger: b.logger, unmarshal: unmarshaler{b.cfg.maxBytes}}
	done := make(chan struct{})
	go func() { // surface client errors (sarama drops them when nobody reads)
		for {
			select {
			case err, ok := <-cg.Errors():
				if !ok {
					return
				}
				b.logger.Error("kafka stream consumer error", err, watermill.LogFields{"topic": topic, "group": group})
			case <-done:
				return
			}
		}
	}()
	for ctx.Err() == nil && h.failed() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				break
			}
			b.logger.Error("kafka stream session ended; rejoining", err, watermill.LogFields{"topic": topic, "group": group})
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	close(done)
	return errors.Join(h.failed(), cg.Close())
}

// streamHandler is the sarama ConsumerGroupHandler of a Stream call.
type streamHandler struct {
	fn        func(brokers.Stream) error
	logger    watermill.LoggerAdapter
	unmarshal unmarshaler
	mu        sync.Mutex
	err       error
}

func (h *streamHandler) failed() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *streamHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *streamHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *streamHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	s := &stream{sess: sess, claim: claim, msgs: make(chan *message.Message, 256), stop: make(chan struct{}), unmarshal: h.unmarshal}
	s.ctx, s.cancel = context.WithCancel(sess.Context())
	defer s.cancel()
	convErr := make(chan error, 1)
	go func() { convErr <- s.convert() }()
	err := h.fn(s)
	close(s.stop)
	err = errors.Join(err, <-convErr)
	if err != nil {
		h.mu.Lock()
		if h.err == nil {
			h.err = fmt.Errorf("%s partition %d: %w", claim.Topic(), claim.Partition(), err)
		}
		h.mu.Unlock()
	}
	return err
}

type stream struct {
	unmarshal unmarshaler
	sess      sarama.ConsumerGroupSession
	claim     sarama.ConsumerGroupClaim
	msgs      chan *message.Message
	stop      chan struct{} // closed when fn returned
	// ctx ends with the session or when the claim closes (the partition
	// was revoked).
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) Partition() int32                  { return s.claim.Partition() }
func (s *stream) Messages() <-chan *message.Message { return s.msgs }

func (s *stream) Commit(_ context.Context, msg *message.Message) error {
	_, off, ok := brokers.Position(msg)
	if !ok {
		return fmt.Errorf("commit: message %s was not read from a stream", msg.UUID)
	}
	s.sess.MarkOffset(s.claim.Topic(), s.claim.Partition(), off+1, "")
	s.sess.Commit()
	return nil
}

// convert turns the claim's records into messages until the claim closes
// or fn returns.
func (s *stream) convert() error {
	defer close(s.msgs)
	defer s.cancel()
	for {
		var rec *sarama.ConsumerMessage
		var ok bool
		select {
		case rec, ok = <-s.claim.Messages():
			if !ok {
				return nil
			}
		case <-s.stop:
			return nil
		}
		msg, err := s.unmarshal.Unmarshal(rec)
		if err != nil {
			// Not a record this broker can read: stop taking this
			// partition rather than skip it.
			return fmt.Errorf("offset %d: %w", rec.Offset, err)
		}
		brokers.SetPosition(msg, rec.Partition, rec.Offset, rec.Timestamp.UTC())
		select {
		case s.msgs <- msg:
		case <-s.stop:
			return nil
		}
	}
}
