package brokers

import (
	"context"
	"time"
)

// Topics implements Inspector: a mem:// broker keeps no record of its
// topics that another process could read, so it reports ErrInProcessOnly.
func (b *memBroker) Topics(context.Context) ([]TopicInfo, error) { return nil, ErrInProcessOnly }

// Tail implements Inspector inside the process that holds the broker (an
// embedding program, a test): it subscribes like any subscription, which
// takes nothing from others, as mem:// delivers every message to every
// subscription. fromBeginning needs mem://?persistent=true (messages are
// kept); otherwise only new messages are seen. Offsets are unknown (-1).
func (b *memBroker) Tail(ctx context.Context, topic string, _ bool, fn func(Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in, err := memSubscriber{b.ch, b.queue}.Subscribe(ctx, topic)
	if err != nil {
		return err
	}
	for m := range in {
		m.Ack()
		if err := fn(Record{Topic: topic, Offset: -1, Time: time.Now().UTC(), Message: m}); err != nil {
			return err
		}
	}
	return nil
}

var _ Inspector = (*memBroker)(nil)
