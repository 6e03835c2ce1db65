// Package brokers opens pub/sub backends by URL scheme. Every broker is a
// Watermill publisher plus subscribers bound to a consumer group, and every
// broker passes Watermill's universal test suite (pubsub/tests.TestPubSub).
//
// Built in: mem:// (in-process, not durable) and sqlite://PATH (the embedded
// durable default). Driver packages add schemes with Register from their
// init, and are imported for that side effect: brokers/kafka adds kafka://.
// This package holds the contracts only; no vendor client is linked here.
package brokers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/internal/redact"
	"github.com/sluicehq/sluice/internal/scheme"
)

// Broker is an opened pub/sub backend. It is safe for concurrent use.
//
// Close closes the publisher and every subscriber the broker handed out,
// waiting for their goroutines; messages not yet acked are redelivered by a
// durable broker the next time a subscriber of the same group starts.
type Broker interface {
	// Publisher publishes to any topic. It is shared: callers must not
	// close it (Close on the broker does).
	Publisher() message.Publisher
	// Subscriber returns a subscriber whose subscriptions consume as the
	// named consumer group: each message of a topic goes to one subscription
	// of the group. Brokers without groups (mem) deliver every message to
	// every subscription and say so in Features.
	Subscriber(group string) (message.Subscriber, error)
	// Features says what the broker guarantees.
	Features() Features
	Close() error
}

// Partitioner is implemented by brokers that can split one consumer
// group's messages of a topic over n subscribers, for concurrency: each
// partition is consumed in order, and messages with the same partition key
// (metadata "partition_key") share a partition. Changing n between runs
// is safe: nothing is skipped, though messages near the change may be
// delivered again.
type Partitioner interface {
	Partitions(ctx context.Context, topic, group string, n int) ([]message.Subscriber, error)
}

// Pruner is implemented by brokers that delete old messages themselves
// (Kafka has its own retention).
type Pruner interface {
	// Prune deletes the messages stored before cutoff that no consumer
	// group still needs, and returns how many it deleted.
	Prune(ctx context.Context, cutoff time.Time) (int64, error)
}

// MetaPartitionKey is the metadata key whose value keeps messages in order:
// messages with the same key go to the same partition of a consumer group
// (and, on Kafka, to the same Kafka partition).
const MetaPartitionKey = "partition_key"

// Features describes a broker's guarantees, for the engine and for docs.
type Features struct {
	ConsumerGroups bool // competing consumers within a group
	Persistent     bool // messages survive a restart of the process
	Ordered        bool // a subscription sees a topic's messages in publish order
}

// OpenFunc opens a broker from a parsed URL.
type OpenFunc func(ctx context.Context, u *url.URL, logger watermill.LoggerAdapter) (Broker, error)

var openers = scheme.New[OpenFunc]("brokers")

// Register makes a scheme available to Open. It panics if the scheme is
// registered twice: that is a programming error found at start-up.
func Register(name string, open OpenFunc) { openers.Register(name, open) }

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string { return openers.Schemes() }

// ErrUnknownScheme is returned by Open for a URL whose scheme no broker
// registered.
var ErrUnknownScheme = errors.New("unknown broker scheme")

// Open opens the broker named by rawURL, such as "sqlite://.sluice/queue.db"
// or "mem://". A nil logger discards Watermill's logs.
func Open(ctx context.Context, rawURL string, logger watermill.LoggerAdapter) (Broker, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the URL: keep only its reason, and redact.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("broker url %q: %w", redact.URL(rawURL), err)
	}
	open, ok := openers.Lookup(u.Scheme)
	if !ok {
		return nil, fmt.Errorf("broker url %q: %w (known: %s)", redact.URL(rawURL), ErrUnknownScheme, strings.Join(Schemes(), ", "))
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	b, err := open(ctx, u, logger)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", u.Scheme, err)
	}
	return b, nil
}

// URLPath returns the file path a URL names: "sqlite://rel/dir/q.db" and
// "sqlite:///abs/q.db" both work, as does "sqlite:q.db".
func URLPath(u *url.URL) string { return scheme.Path(u) }

// Inspector is implemented by brokers that can show what their topics
// hold without taking part in any consumer group: `sluice topics` and
// `sluice tail` use it. Nothing an Inspector does moves a group's
// position or creates a topic.
type Inspector interface {
	// Topics lists the topics with their message counts and, per
	// consumer group, how many messages the group has yet to consume.
	Topics(ctx context.Context) ([]TopicInfo, error)
	// Tail calls fn with each message of topic, in order per partition:
	// from the oldest one stored when fromBeginning, else only those
	// published from now on. A topic that does not exist yet is waited
	// for. Tail returns when ctx ends (with nil) or with fn's error.
	Tail(ctx context.Context, topic string, fromBeginning bool, fn func(Record) error) error
}

// TopicInfo describes a topic: Messages is how many it holds now (what
// retention has not removed), -1 when the broker cannot tell.
type TopicInfo struct {
	Name     string      `json:"topic"`
	Messages int64       `json:"messages"`
	Groups   []GroupInfo `json:"groups,omitempty"`
}

// GroupInfo is a consumer group's position on a topic: Lag is how many
// stored messages come after what the group has acked (its partitions
// summed).
type GroupInfo struct {
	Name string `json:"group"`
	Lag  int64  `json:"lag"`
}

// Record is a message as Tail reads it, with where it is stored.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64 // -1 when the broker has no offsets
	Time      time.Time
	Message   *message.Message
}

// ErrInProcessOnly is returned by the Inspector of brokers whose topics
// live inside one process (mem://): another process sees nothing of them.
var ErrInProcessOnly = errors.New("mem:// topics live inside the process that runs the flows: a separate sluice command cannot see them (use sqlite://, kafka:// or amqp:// to inspect topics from outside)")

// GroupInitializer is implemented by brokers whose consumer groups only
// receive messages published after the group was first set up (AMQP: a
// group is a queue, and an exchange routes nothing to a queue that does
// not exist yet). InitializeGroup sets the group up without consuming, so
// what is published next is kept for it. Conformance suites call it
// before publishing; the engine's subscriptions set groups up at start.
type GroupInitializer interface {
	InitializeGroup(ctx context.Context, topic, group string) error
}
