package brokers

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Errors of messages and topics every broker refuses.
var (
	// ErrInvalidTopic: a topic name no broker can carry (see ValidateTopic).
	ErrInvalidTopic = errors.New("invalid topic name")
	// ErrMessageTooLarge: a message over the broker's max_message_bytes.
	ErrMessageTooLarge = errors.New("message too large")
)

// MaxTopicLen is the longest topic name, in bytes.
const MaxTopicLen = 200

// ValidateTopic accepts the topic names every broker can carry: 1 to 200
// letters (ASCII), digits, '-', '$', ':', '.' and '_', and not "." or "..".
// Brokers check every Publish and Subscribe with it; the flow loader and
// the CLI use it to refuse a name before anything runs.
func ValidateTopic(topic string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidTopic, topic, why) }
	switch {
	case topic == "":
		return bad("empty")
	case len(topic) > MaxTopicLen:
		return bad(fmt.Sprintf("longer than %d characters", MaxTopicLen))
	case topic == "." || topic == "..":
		return bad(`"." and ".." are not topics`)
	}
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '$', c == ':', c == '.', c == '_':
		default:
			return bad("may hold only letters, digits and - $ : . _")
		}
	}
	return nil
}

// DefaultMaxMessageBytes is the default limit on a message's size (payload
// plus metadata) on every broker; the URL query parameter
// max_message_bytes changes it.
const DefaultMaxMessageBytes = 10 << 20

// MetaRejected is set on a consumed message the broker would not load, with
// the reason (over max_message_bytes); its payload is empty. The consumer
// must not process it: it dead-letters it with the reason.
const MetaRejected = "sluice_rejected"

// parseMaxMessageBytes reads max_message_bytes from a broker URL's query.
func parseMaxMessageBytes(q url.Values) (int64, error) {
	s := q.Get("max_message_bytes")
	if s == "" {
		return DefaultMaxMessageBytes, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > 1<<31-1 {
		return 0, fmt.Errorf("max_message_bytes must be a number of bytes from 1 to 2147483647, not %q", s)
	}
	return n, nil
}

// MessageSize is what counts against max_message_bytes: the payload and
// the metadata's keys and values.
func MessageSize(m *message.Message) int64 {
	n := int64(len(m.Payload))
	for k, v := range m.Metadata {
		n += int64(len(k) + len(v))
	}
	return n
}

// checkPublish refuses a publish to an invalid topic or of a message over
// limit bytes, naming the message and the limit.
func checkPublish(topic string, limit int64, msgs []*message.Message) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	for _, m := range msgs {
		if n := MessageSize(m); n > limit {
			return fmt.Errorf("publish to %s: message %s is %d bytes, over the broker's limit of %d (max_message_bytes): %w", topic, m.UUID, n, limit, ErrMessageTooLarge)
		}
	}
	return nil
}

// rejected is the message delivered in place of a stored one over the
// limit: its id, no payload, and the reason in MetaRejected.
func rejected(id string, size, limit int64) *message.Message {
	m := message.NewMessage(id, nil)
	m.Metadata.Set(MetaRejected, fmt.Sprintf("message %s is %d bytes, over the broker's limit of %d (max_message_bytes); not loaded", id, size, limit))
	return m
}

// Rejected returns, for a consumed message the broker delivered without
// its payload (see MetaRejected), an error wrapping ErrMessageTooLarge with
// the reason; nil for any other message. Consumers call it before
// processing a message and dead-letter the message with the error, as a
// permanent failure: running the flow on the empty payload would lose the
// message silently.
func Rejected(msg *message.Message) error {
	if reason := msg.Metadata.Get(MetaRejected); reason != "" {
		return fmt.Errorf("%w: %s", ErrMessageTooLarge, reason)
	}
	return nil
}
