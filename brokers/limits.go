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

// DefaultMaxMessageBytes is the default limit on a message's payload on
// every broker; the URL query parameter max_message_bytes changes it.
const DefaultMaxMessageBytes = 10 << 20

// MaxMetadataBytes bounds a message's metadata (keys and values). It is
// apart from the payload's limit so that a dead letter (the input's
// payload, with the failure's reason added to its metadata) of any
// accepted message can be published too.
const MaxMetadataBytes = 1 << 20

// MetaRejected is set on a consumed message the broker would not load, with
// the reason (over max_message_bytes); its payload is empty. The consumer
// must not process it: it dead-letters it with the reason.
const MetaRejected = "sluice_rejected"

// ParseMaxMessageBytes reads max_message_bytes from a broker URL's query.
func ParseMaxMessageBytes(q url.Values) (int64, error) {
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

// MetadataSize is the bytes of a message's metadata keys and values.
func MetadataSize(m *message.Message) int64 {
	var n int64
	for k, v := range m.Metadata {
		n += int64(len(k) + len(v))
	}
	return n
}

// TooLarge says why a message with a payload and metadata of these sizes
// is over the limits, or returns "".
func TooLarge(id string, payload, meta, limit int64) string {
	switch {
	case payload > limit:
		return fmt.Sprintf("message %s has a payload of %d bytes, over the broker's limit of %d (max_message_bytes)", id, payload, limit)
	case meta > MaxMetadataBytes:
		return fmt.Sprintf("message %s has %d bytes of metadata, over the limit of %d", id, meta, MaxMetadataBytes)
	}
	return ""
}

// CheckPublish refuses a publish to an invalid topic or of a message over
// the limits, naming the message and the limit.
func CheckPublish(topic string, limit int64, msgs []*message.Message) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	for _, m := range msgs {
		if why := TooLarge(m.UUID, int64(len(m.Payload)), MetadataSize(m), limit); why != "" {
			return fmt.Errorf("publish to %s: %s: %w", topic, why, ErrMessageTooLarge)
		}
	}
	return nil
}

// RejectedMessage is the message delivered in place of a stored one over the
// limits: its id, no payload, and the reason in MetaRejected.
func RejectedMessage(id, why string) *message.Message {
	m := message.NewMessage(id, nil)
	m.Metadata.Set(MetaRejected, why+"; not loaded")
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
