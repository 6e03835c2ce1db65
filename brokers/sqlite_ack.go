package brokers

import (
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ackTracker closes a gap in watermill-sql's subscriber: after handing a
// message out it waits for either its ack or the subscriber closing (or
// its context ending), and when both are ready Go's select picks one at
// random, so an ack given just before Close (or the end of the
// subscription's context) could be dropped and the message delivered
// again. settle, called before the subscriber closes or its context ends,
// waits until the subscriber has seen the last ack: it has handed out the
// next message, or committed the group's offset past the acked one.
type ackTracker struct {
	broker       *sqliteBroker
	topic, group string
	stop         chan struct{} // closed once the subscriber is closed
	done         chan struct{} // closed when forwarding ended and out is closed

	mu sync.Mutex
	in *message.Message // the last message the subscriber handed over
}

// forward passes the subscription's messages on.
func (t *ackTracker) forward(in <-chan *message.Message) <-chan *message.Message {
	t.stop, t.done = make(chan struct{}), make(chan struct{})
	out := make(chan *message.Message)
	go func() {
		defer close(t.done)
		defer close(out)
		for m := range in {
			t.mu.Lock()
			t.in = m // handing m over means every earlier ack was seen
			t.mu.Unlock()
			select {
			case out <- m:
			case <-t.stop:
				return
			}
		}
	}()
	return out
}

// settleWithin bounds how long Close waits for the last ack to be seen.
const settleWithin = 2 * time.Second

// settle waits, for up to settleWithin, until the subscriber has seen the
// ack of the last message it handed over, if that message is acked.
func (t *ackTracker) settle() {
	t.mu.Lock()
	last := t.in
	t.mu.Unlock()
	if last == nil {
		return
	}
	select {
	case <-last.Acked():
	default:
		return // not acked: nothing to lose
	}
	var offset int64
	if err := t.broker.db.QueryRow(`SELECT "offset" FROM `+messagesTable(t.topic)+` WHERE uuid = ? ORDER BY "offset" DESC LIMIT 1`, last.UUID).Scan(&offset); err != nil {
		return
	}
	deadline := time.Now().Add(settleWithin)
	wait := time.Millisecond
	for time.Now().Before(deadline) {
		t.mu.Lock()
		moved := t.in != last
		t.mu.Unlock()
		if moved {
			return
		}
		var acked int64
		err := t.broker.db.QueryRow(`SELECT COALESCE((SELECT offset_acked FROM `+offsetsTable(t.topic)+` WHERE consumer_group = ?), 0)`, t.group).Scan(&acked)
		if err != nil || acked >= offset {
			return
		}
		time.Sleep(wait) // between checks of the condition
		wait = min(wait*2, 10*time.Millisecond)
	}
}

// close ends the forwarding once the subscriber is closed, and returns
// when the subscription's channel is closed.
func (t *ackTracker) close() {
	close(t.stop)
	<-t.done
}
