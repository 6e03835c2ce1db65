package flows

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/state"
)

// Metadata keys Sluice sets on messages it publishes.
const (
	MetaFlow        = "sluice_flow"
	MetaStep        = "sluice_step"
	MetaNode        = "sluice_node"
	MetaError       = "sluice_error"
	MetaAttempts    = "sluice_attempts"
	MetaFailedAt    = "sluice_failed_at"
	MetaSourceTopic = "sluice_source_topic"
	MetaSourceID    = "sluice_source_id"
	MetaInput       = "sluice_input" // the input's identity: message id, or bucket/key@etag
	// MetaFirstFailedAt is when the failing step first failed; MetaFailedAt
	// when it failed last.
	MetaFirstFailedAt   = "sluice_first_failed_at"
	MetaSourcePartition = "sluice_source_partition" // Kafka partition of the input
	MetaSourceOffset    = "sluice_source_offset"    // and its offset
	MetaRun             = "sluice_run"
	// MetaHops counts the flows a message's chain has passed through: a
	// run's outputs carry its input's count plus one, and an input past
	// the engine's MaxHops is dead-lettered (a loop through flows).
	MetaHops = "sluice_hops"
)

// hops is how many flows produced msg, one after another.
func hops(msg *message.Message) int {
	if msg == nil {
		return 0
	}
	v := msg.Metadata.Get(MetaHops)
	if v == "" {
		return 0 // not published by a flow (Atoi's error would cost an allocation per message)
	}
	n, _ := strconv.Atoi(v)
	return max(n, 0)
}

// idSpace namespaces the deterministic ids of published messages.
var idSpace = uuid.MustParse("6f1c1d3e-8a4b-4e2f-9d7a-5c3b2a1f0e9d")

// derivedID is a stable id for the n-th message derived from an input, so
// a redelivered input publishes the same ids again.
func derivedID(inputID, what string) string {
	return uuid.NewSHA1(idSpace, []byte(inputID+"\x00"+what)).String()
}

// outputMessages makes a run's queued outputs messages, with ids derived
// from its input so a redelivered input republishes the same ids.
func outputMessages(r *runner, inputID string, d *message.Message, dl *nodes.Delivery) []topicMessage {
	outs := dl.Outputs()
	env := dl.Envelope()
	msgs := make([]topicMessage, len(outs))
	for j, o := range outs {
		m := message.NewMessage(derivedID(inputID, r.f.Name+"/out/"+strconv.Itoa(j)), o.Payload)
		for k, v := range o.Meta {
			m.Metadata.Set(k, v)
		}
		setTraceMeta(m.Metadata, env.Meta)
		m.Metadata.Set(MetaFlow, r.f.Name)
		m.Metadata.Set(MetaRun, env.Run)
		m.Metadata.Set(MetaHops, strconv.Itoa(hops(d)+1))
		msgs[j] = topicMessage{topic: o.Topic, msg: m}
	}
	return msgs
}

type topicMessage struct {
	topic string
	msg   *message.Message
}

// publish publishes messages in order, one Publish per run of messages to
// the same topic (a batch is one commit on the embedded queue).
func (e *Engine) publish(r *runner, msgs []topicMessage) error {
	pub := e.opts.Broker.Publisher()
	for i := 0; i < len(msgs); {
		j := i
		batch := make([]*message.Message, 0, 1)
		for ; j < len(msgs) && msgs[j].topic == msgs[i].topic; j++ {
			batch = append(batch, msgs[j].msg)
		}
		if err := pub.Publish(msgs[i].topic, batch...); err != nil {
			if errors.Is(err, brokers.ErrInvalidTopic) || errors.Is(err, brokers.ErrMessageTooLarge) {
				// A templated topic no broker carries, an output over the
				// limit: no retry fixes it.
				err = nodes.Permanent(err)
			}
			return &publishError{topic: msgs[i].topic, err: err}
		}
		r.m.published.Add(float64(len(batch)))
		i = j
	}
	return nil
}

type publishError struct {
	topic string
	err   error
}

func (p *publishError) Error() string { return "topic " + p.topic + ": " + p.err.Error() }
func (p *publishError) Unwrap() error { return p.err }

// publishOutputs publishes a run's queued messages.
func (e *Engine) publishOutputs(r *runner, inputID string, in *message.Message, dl *nodes.Delivery) error {
	if len(dl.Outputs()) == 0 {
		return nil
	}
	return e.publish(r, outputMessages(r, inputID, in, dl))
}

// deadLetterMessage is the input, unchanged, for the flow's dead-letter
// topic, with why it failed in its metadata.
func deadLetterMessage(r *runner, msg *message.Message, input string, fail *failure) *message.Message {
	dl := message.NewMessage(derivedID(msg.UUID, r.f.Name+"/dead-letter"), msg.Payload)
	for k, v := range msg.Metadata {
		dl.Metadata.Set(k, v)
	}
	dl.Metadata.Set(MetaFlow, r.f.Name)
	if fail.step != nil {
		dl.Metadata.Set(MetaStep, fail.step.ID)
		dl.Metadata.Set(MetaNode, fail.step.Type)
	}
	dl.Metadata.Set(MetaError, capText(fail.err.Error(), maxReason))
	dl.Metadata.Set(MetaAttempts, strconv.Itoa(max(fail.attempts, 1)))
	last := fail.last
	if last.IsZero() {
		last = time.Now()
	}
	first := fail.first
	if first.IsZero() {
		first = last
	}
	dl.Metadata.Set(MetaFirstFailedAt, first.UTC().Format(time.RFC3339Nano))
	dl.Metadata.Set(MetaFailedAt, last.UTC().Format(time.RFC3339Nano))
	dl.Metadata.Set(MetaSourceTopic, r.f.InputTopic())
	dl.Metadata.Set(MetaSourceID, msg.UUID)
	dl.Metadata.Set(MetaInput, input)
	if p, o, ok := brokers.Position(msg); ok {
		dl.Metadata.Set(MetaSourcePartition, strconv.Itoa(int(p)))
		dl.Metadata.Set(MetaSourceOffset, strconv.FormatInt(o, 10))
	}
	return dl
}

// maxReason bounds the reason a dead letter carries in its metadata, so
// the dead letter of any accepted message fits the broker's limits.
const maxReason = 64 << 10

// capText cuts s to at most n bytes, saying so.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "… (cut)"
}

// deadLetter publishes the input to the flow's dead-letter topic and
// keeps it for `sluice dlq`.
func (e *Engine) deadLetter(r *runner, msg *message.Message, input string, fail *failure) error {
	dl := deadLetterMessage(r, msg, input, fail)
	if err := e.opts.Broker.Publisher().Publish(r.f.DeadLetter, dl); err != nil {
		return err
	}
	r.m.published.Inc()
	e.keepDeadLetter(r, msg, dl, fail)
	return nil
}

// keepDeadLetter records a published dead letter for `sluice dlq`; the
// dead-letter topic has it in any case.
func (e *Engine) keepDeadLetter(r *runner, msg, dl *message.Message, fail *failure) {
	if e.opts.State == nil {
		return
	}
	rec := state.DeadLetter{
		ID: dl.UUID, Flow: r.f.Name, Error: fail.err.Error(), Attempts: max(fail.attempts, 1), Failed: time.Now().UTC(),
		SourceTopic: r.f.InputTopic(), SourceID: msg.UUID, Topic: r.f.DeadLetter, Payload: msg.Payload, Metadata: msg.Metadata,
	}
	if fail.step != nil {
		rec.Step, rec.Node = fail.step.ID, fail.step.Type
	}
	if err := e.opts.State.RecordDeadLetter(context.Background(), rec); err != nil {
		r.log.Error("recording the dead letter failed; it is on the dead-letter topic", "error", err)
	}
}
