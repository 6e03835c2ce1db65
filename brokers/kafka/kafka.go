// Package kafka registers the kafka:// broker scheme: Kafka through
// watermill-kafka on IBM/sarama (≥ 1.48: older sarama breaks consumer
// groups against newer protocol versions). Import it for its side effect:
//
//	import _ "github.com/sluicehq/sluice/brokers/kafka"
//
// Records are keyed by the brokers.MetaPartitionKey metadata (by message id
// when unset), so one entity's messages stay in one partition, in order.
// Consumed messages carry their position (brokers.Position and
// brokers.Timestamp). The broker implements brokers.Partitioner and
// brokers.Streamer; Kafka keeps its own retention, so not brokers.Pruner.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/brokers"
)

func init() { brokers.Register("kafka", open) }

// broker is Kafka through watermill-kafka (IBM/sarama). Each consumer
// group is a Kafka consumer group starting from the oldest offset, so a new
// flow skips no backlog; offsets are committed after the handler acks.
// Messages are keyed by their "partition_key" metadata (by id when unset),
// so one entity's messages stay in one partition, in order. Topics are
// created on first use with the configured partition count.
type broker struct {
	brokers []string
	cfg     config
	logger  watermill.LoggerAdapter
	pub     *publisher
	admin   sarama.ClusterAdmin

	mu     sync.Mutex
	subs   []*subscriber
	closed bool

	topicsMu sync.Mutex // one topic creation at a time
}

type config struct {
	version     sarama.KafkaVersion
	partitions  int32
	replication int16
	clientID    string
	tls         *tls.Config
	sasl        string // "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	user, pass  string
	maxWait     time.Duration
	maxBytes    int64 // max_message_bytes: producer limit, and the consumer's fetch limit
}

// open accepts kafka://host:port[,host:port]?version=2.8.0
// &partitions=4&replication=1&client_id=sluice&tls=true&tls_ca=ca.pem&tls_insecure=false
// &sasl=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512&max_message_bytes=10485760. SASL credentials come from the
// URL's user info or from SLUICE_KAFKA_USER and SLUICE_KAFKA_PASSWORD.
func open(ctx context.Context, u *url.URL, logger watermill.LoggerAdapter) (brokers.Broker, error) {
	var hosts []string
	for _, h := range strings.Split(u.Host, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("kafka url needs brokers, e.g. kafka://localhost:9092")
	}
	q := u.Query()
	cfg := config{version: sarama.V2_8_0_0, partitions: 4, replication: 1, clientID: "sluice", maxWait: 50 * time.Millisecond}
	var err error
	if cfg.maxBytes, err = brokers.ParseMaxMessageBytes(q); err != nil {
		return nil, err
	}
	if s := q.Get("version"); s != "" {
		v, err := sarama.ParseKafkaVersion(s)
		if err != nil {
			return nil, fmt.Errorf("version %q: %v", s, err)
		}
		cfg.version = v
	}
	if s := q.Get("partitions"); s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("partitions must be a positive integer, not %q", s)
		}
		cfg.partitions = int32(n)
	}
	if s := q.Get("replication"); s != "" {
		n, err := strconv.ParseInt(s, 10, 16)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("replication must be a positive integer, not %q", s)
		}
		cfg.replication = int16(n)
	}
	if s := q.Get("client_id"); s != "" {
		cfg.clientID = s
	}
	if s := q.Get("max_wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("max_wait must be a positive duration, not %q", s)
		}
		cfg.maxWait = d
	}
	if on, _ := strconv.ParseBool(q.Get("tls")); on {
		insecure, _ := strconv.ParseBool(q.Get("tls_insecure"))
		cfg.tls = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // opt-in
		if ca := q.Get("tls_ca"); ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("tls_ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls_ca %s holds no PEM certificate", ca)
			}
			cfg.tls.RootCAs = pool
		}
	}
	switch s := strings.ToUpper(q.Get("sasl")); s {
	case "", sarama.SASLTypePlaintext, sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512:
		cfg.sasl = s
	default:
		return nil, fmt.Errorf("sasl must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", s)
	}
	cfg.user, cfg.pass = os.Getenv("SLUICE_KAFKA_USER"), os.Getenv("SLUICE_KAFKA_PASSWORD")
	if u.User != nil {
		cfg.user = u.User.Username()
		if p, ok := u.User.Password(); ok {
			cfg.pass = p
		}
	}
	if cfg.sasl != "" && cfg.user == "" {
		return nil, fmt.Errorf("sasl %s needs a user (in the URL or SLUICE_KAFKA_USER)", cfg.sasl)
	}
	if cfg.sasl != "" && cfg.sasl != sarama.SASLTypePlaintext {
		return nil, fmt.Errorf("sasl %s is not supported yet; use PLAIN over TLS", cfg.sasl)
	}

	b := &broker{brokers: hosts, cfg: cfg, logger: logger}
	admin, err := sarama.NewClusterAdmin(hosts, b.sarama())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(hosts, ","), err)
	}
	b.admin = admin
	pcfg := b.sarama()
	pcfg.Producer.Return.Successes = true
	pcfg.Producer.RequiredAcks = sarama.WaitForAll
	pcfg.Producer.Retry.Max = 10
	pcfg.Producer.Partitioner = sarama.NewHashPartitioner
	pub, err := wkafka.NewPublisher(wkafka.PublisherConfig{
		Brokers: hosts, Marshaler: marshaler, OverwriteSaramaConfig: pcfg,
	}, logger)
	if err != nil {
		admin.Close()
		return nil, err
	}
	b.pub = &publisher{b: b, pub: pub}
	return b, nil
}

// marshaler keys each record by the partition key, or by message id.
var marshaler = wkafka.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) {
	if k := m.Metadata.Get(brokers.MetaPartitionKey); k != "" {
		return k, nil
	}
	return m.UUID, nil
})

// unmarshaler reads records as Watermill messages. A record from a
// producer other than Watermill has no message id header: its id is then
// its position, "kafka:TOPIC/PARTITION/OFFSET", the same each time it is
// delivered, so it has a stable identity like any other message (an empty
// id would make every such record look like one input).
// A record over max (max_message_bytes) is delivered as rejected, without
// its payload (MetaRejected): Kafka returns a record larger than the fetch
// limit anyway when it is the first of its partition (KIP-74).
type unmarshaler struct{ max int64 }

func (u unmarshaler) Unmarshal(rec *sarama.ConsumerMessage) (*message.Message, error) {
	msg, err := marshaler.Unmarshal(rec)
	if err != nil {
		return nil, err
	}
	if msg.UUID == "" {
		msg.UUID = fmt.Sprintf("kafka:%s/%d/%d", rec.Topic, rec.Partition, rec.Offset)
	}
	if u.max > 0 {
		if why := brokers.TooLarge(msg.UUID, int64(len(msg.Payload)), brokers.MetadataSize(msg), u.max); why != "" {
			return brokers.RejectedMessage(msg.UUID, why), nil
		}
	}
	return msg, nil
}

// sarama returns the shared client settings.
func (b *broker) sarama() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = b.cfg.version
	c.ClientID = b.cfg.clientID
	c.Metadata.Retry.Backoff = 250 * time.Millisecond
	c.Admin.Timeout = 30 * time.Second
	// A record over the limit is refused when produced, and skipped with
	// ErrMessageTooLarge when consumed, never fetched whole.
	c.Producer.MaxMessageBytes = int(b.cfg.maxBytes)
	c.Consumer.Fetch.Max = int32(b.cfg.maxBytes)
	c.Consumer.Fetch.Default = min(c.Consumer.Fetch.Default, int32(b.cfg.maxBytes))
	if b.cfg.tls != nil {
		c.Net.TLS.Enable, c.Net.TLS.Config = true, b.cfg.tls
	}
	if b.cfg.sasl != "" {
		c.Net.SASL.Enable = true
		c.Net.SASL.Mechanism = sarama.SASLMechanism(b.cfg.sasl)
		c.Net.SASL.User, c.Net.SASL.Password = b.cfg.user, b.cfg.pass
	}
	return c
}

func (b *broker) Publisher() message.Publisher { return b.pub }

func (b *broker) Features() brokers.Features {
	return brokers.Features{ConsumerGroups: true, Persistent: true, Ordered: false}
}

func (b *broker) Subscriber(group string) (message.Subscriber, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("kafka broker is closed")
	}
	c := b.consumer()
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers: b.brokers, Unmarshaler: unmarshaler{b.cfg.maxBytes}, OverwriteSaramaConfig: c, ConsumerGroup: group,
		InitializeTopicDetails: &sarama.TopicDetail{NumPartitions: b.cfg.partitions, ReplicationFactor: b.cfg.replication},
		NackResendSleep:        100 * time.Millisecond,
		ReconnectRetrySleep:    time.Second,
	}, b.logger)
	if err != nil {
		return nil, err
	}
	s := &subscriber{b: b, sub: sub, closing: make(chan struct{})}
	b.subs = append(b.subs, s)
	return s, nil
}

// consumer returns the settings of consumer group members.
func (b *broker) consumer() *sarama.Config {
	c := b.sarama()
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.MaxWaitTime = b.cfg.maxWait
	c.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	c.Consumer.Group.Session.Timeout = 6 * time.Second
	c.Consumer.Group.Rebalance.Timeout = 3 * time.Second
	c.ChannelBufferSize = 1024
	return c
}

// Partitions implements Partitioner: n members of the Kafka consumer group,
// among which Kafka shares the topic's partitions. More members than
// partitions leaves some idle, so the topic is created with at least n.
func (b *broker) Partitions(ctx context.Context, topic, group string, n int) ([]message.Subscriber, error) {
	if err := b.ensureTopic(topic, max(int32(n), b.cfg.partitions)); err != nil {
		return nil, err
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

// ensureTopic creates a topic with the given partitions if it is missing.
func (b *broker) ensureTopic(topic string, partitions int32) error {
	b.topicsMu.Lock()
	defer b.topicsMu.Unlock()
	if b.pub.known(topic) {
		return nil
	}
	err := b.admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: b.cfg.replication}, false)
	var terr *sarama.TopicError
	if err != nil && !(errors.As(err, &terr) && terr.Err == sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	b.pub.remember(topic)
	return nil
}

func (b *broker) Close() error {
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
	errs = append(errs, b.pub.pub.Close(), b.admin.Close())
	return errors.Join(errs...)
}

// publisher creates topics before their first message.
type publisher struct {
	b      *broker
	pub    *wkafka.Publisher
	topics sync.Map
}

func (p *publisher) known(topic string) bool { _, ok := p.topics.Load(topic); return ok }
func (p *publisher) remember(topic string)   { p.topics.Store(topic, true) }

func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	if err := brokers.CheckPublish(topic, p.b.cfg.maxBytes, msgs); err != nil {
		return err
	}
	if !p.known(topic) {
		if err := p.b.ensureTopic(topic, p.b.cfg.partitions); err != nil {
			return err
		}
	}
	return p.pub.Publish(topic, msgs...)
}

// Close is a no-op: the broker owns the producer.
func (p *publisher) Close() error { return nil }

// subscriber leaves closing to the broker when the router closes it
// early; closing twice is harmless. It relays watermill-kafka's messages,
// stamping each with its position: watermill-kafka keeps the record's
// partition, offset and timestamp in the message's context under its own
// keys, which the contract package brokers does not read.
type subscriber struct {
	b         *broker
	sub       *wkafka.Subscriber
	closing   chan struct{}
	closeOnce sync.Once
	relays    sync.WaitGroup
}

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := brokers.ValidateTopic(topic); err != nil {
		return nil, err
	}
	if !s.b.pub.known(topic) {
		if err := s.b.ensureTopic(topic, s.b.cfg.partitions); err != nil {
			return nil, err
		}
	}
	in, err := s.sub.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	s.relays.Add(1)
	go func() {
		defer s.relays.Done()
		defer close(out)
		for msg := range in {
			stamp(msg)
			select {
			case out <- msg:
			case <-ctx.Done():
				// Not handed over: watermill-kafka, stopping on the same
				// context, does not wait for its ack; keep draining in.
			case <-s.closing:
			}
		}
	}()
	return out, nil
}

// stamp copies the position watermill-kafka put in msg's context to where
// brokers.Position reads it.
func stamp(msg *message.Message) {
	p, okP := wkafka.MessagePartitionFromCtx(msg.Context())
	o, okO := wkafka.MessagePartitionOffsetFromCtx(msg.Context())
	if !okP || !okO {
		return
	}
	t, _ := wkafka.MessageTimestampFromCtx(msg.Context())
	if !t.IsZero() {
		t = t.UTC()
	}
	brokers.SetPosition(msg, p, o, t)
}

// Close stops the subscriptions and returns once their channels are
// closed.
func (s *subscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	err := s.sub.Close() // returns after watermill-kafka closed every in
	s.relays.Wait()
	return err
}

var (
	_ brokers.Partitioner = (*broker)(nil)
	_ brokers.Streamer    = (*broker)(nil)
	_ message.Subscriber  = (*subscriber)(nil)
	_ message.Publisher   = (*publisher)(nil)
)
