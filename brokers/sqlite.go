package brokers

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/internal/dbident"
	"github.com/sluicehq/sluice/internal/sqlitedb"
)

func init() { Register("sqlite", openSQLite) }

// sqliteBroker is the embedded durable queue: watermill-sql's publisher and
// subscriber over one SQLite file, through the adapters in
// sqlite_adapters.go. Each topic is a table of messages kept in offset
// order; each consumer group keeps the offset it has acked.
//
// Delivery is at least once: a message is acked (its offset stored) after
// the handler acks it, so a crash redelivers what was in flight, never
// less. Within a group, subscriptions on one topic take turns (one batch at
// a time), so a topic is consumed in publish order.
//
// Retention: at open and every hour, messages older than the retention
// (7 days by default) that every consumer group of their topic has acked
// are deleted (see Prune).
type sqliteBroker struct {
	path   string
	db     *sql.DB
	pub    *wsql.Publisher
	logger watermill.LoggerAdapter
	cfg    sqliteConfig

	mu     sync.Mutex
	subs   []*sqliteSubscriber
	closed bool

	stopPrune context.CancelFunc
	pruning   sync.WaitGroup

	// lockRef: this broker uses its process's consumer locks on the file
	// (sqlite_lock.go); guarded by lockFiles.
	lockRef bool
}

type sqliteConfig struct {
	poll      time.Duration // wait between polls of an empty topic
	resend    time.Duration // wait before redelivering a nacked message
	batch     int           // messages read per query
	ackWithin time.Duration // 0: wait for the handler however long it takes
	retention time.Duration // consumed messages older than this are deleted; 0: kept
	maxBytes  int64         // largest message published or loaded (payload and metadata)
}

// openSQLite accepts sqlite://PATH?poll=50ms&resend=100ms&batch=100&ack_deadline=0&sync=normal&retention=168h&max_message_bytes=10485760.
func openSQLite(ctx context.Context, u *url.URL, logger watermill.LoggerAdapter) (Broker, error) {
	path := URLPath(u)
	if path == "" {
		return nil, fmt.Errorf("sqlite url needs a file path, e.g. sqlite://.sluice/queue.db")
	}
	q := u.Query()
	cfg := sqliteConfig{poll: 50 * time.Millisecond, resend: 100 * time.Millisecond, batch: 100, retention: 7 * 24 * time.Hour}
	var err error
	for name, dst := range map[string]*time.Duration{"poll": &cfg.poll, "resend": &cfg.resend, "ack_deadline": &cfg.ackWithin, "retention": &cfg.retention} {
		if s := q.Get(name); s != "" {
			if *dst, err = time.ParseDuration(s); err != nil || *dst < 0 {
				return nil, fmt.Errorf("%s must be a non-negative duration such as 50ms, not %q", name, s)
			}
		}
	}
	if cfg.poll == 0 || cfg.resend == 0 {
		return nil, fmt.Errorf("poll and resend must be above zero")
	}
	if s := q.Get("batch"); s != "" {
		if _, err := fmt.Sscanf(s, "%d", &cfg.batch); err != nil || cfg.batch < 1 {
			return nil, fmt.Errorf("batch must be a positive integer, not %q", s)
		}
	}
	if cfg.maxBytes, err = ParseMaxMessageBytes(q); err != nil {
		return nil, err
	}
	sync, err := sqlitedb.ParseSync(q.Get("sync"))
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.Open(path, sync)
	if err != nil {
		return nil, err
	}
	if err := dbident.Check(ctx, db, path, "queued messages and consumer positions"); err != nil {
		db.Close()
		return nil, err
	}
	abs, _ := filepath.Abs(path)
	pruneCtx, stopPrune := context.WithCancel(context.Background())
	b := &sqliteBroker{path: abs, db: db, logger: logger, cfg: cfg, stopPrune: stopPrune}
	b.pub, err = wsql.NewPublisher(b.beginner(nil), wsql.PublisherConfig{
		SchemaAdapter:        sqliteSchema{batch: cfg.batch, maxBytes: cfg.maxBytes},
		AutoInitializeSchema: true,
	}, logger)
	if err != nil {
		stopPrune()
		db.Close()
		return nil, err
	}
	if cfg.retention > 0 {
		b.pruning.Go(func() { b.pruneLoop(pruneCtx, cfg.retention) })
	}
	return b, nil
}

func (b *sqliteBroker) Publisher() message.Publisher { return b.pub }

func (b *sqliteBroker) Features() Features {
	return Features{ConsumerGroups: true, Persistent: true, Ordered: true}
}

func (b *sqliteBroker) Subscriber(group string) (message.Subscriber, error) {
	if err := b.consume(group); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("sqlite broker is closed")
	}
	s := &sqliteSubscriber{broker: b, group: group}
	b.subs = append(b.subs, s)
	return s, nil
}

func (b *sqliteBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := b.subs
	b.mu.Unlock()
	b.stopPrune()
	b.pruning.Wait()
	for _, s := range subs {
		_ = s.Close()
	}
	_ = b.pub.Close()
	defer b.releaseConsumer()
	return b.db.Close()
}

// sqliteSubscriber makes one watermill-sql subscriber per Subscribe call,
// each bound to the turn lock of its (file, topic, group).
type sqliteSubscriber struct {
	broker *sqliteBroker
	group  string

	mu     sync.Mutex
	subs   []*wsql.Subscriber
	acks   []*ackTracker // one per subscription
	anon   [][2]string   // (topic, group) of subscriptions without a group
	closed bool
}

// anonGroupPrefix names the private groups of subscriptions without one;
// their offsets are deleted when the subscriber closes.
const anonGroupPrefix = "sluice-anon-"

func (s *sqliteSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, wsql.ErrSubscriberClosed
	}
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	cfg := s.broker.cfg
	ackWithin := cfg.ackWithin
	group := s.group
	if group == "" {
		// No group: this subscription reads the whole topic on its own, from
		// the oldest message, as if it were the only member of a new group.
		group = anonGroupPrefix + watermill.NewULID()
		s.anon = append(s.anon, [2]string{topic, group})
	}
	sub, err := wsql.NewSubscriber(s.broker.beginner(turnLock(s.broker.path, topic, group)), wsql.SubscriberConfig{
		ConsumerGroup:    group,
		AckDeadline:      &ackWithin,
		PollInterval:     cfg.poll,
		ResendInterval:   cfg.resend,
		RetryInterval:    time.Second,
		SchemaAdapter:    sqliteSchema{batch: cfg.batch, maxBytes: cfg.maxBytes},
		OffsetsAdapter:   sqliteOffsets{},
		InitializeSchema: true,
	}, s.broker.logger)
	if err != nil {
		return nil, err
	}
	// watermill-sql waits for a message's ack or the subscription's end,
	// and when both are ready picks one at random: an ack given just
	// before ctx ends would be dropped, and the message delivered again.
	// So it gets a context of its own, ended once the last ack is seen
	// (settle) after ctx ends, as Close does.
	inner, stop := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := sub.Subscribe(inner, topic)
	if err != nil {
		stop()
		_ = sub.Close()
		return nil, err
	}
	t := &ackTracker{broker: s.broker, topic: topic, group: group}
	s.subs = append(s.subs, sub)
	s.acks = append(s.acks, t)
	out := t.forward(ch)
	go func() {
		defer stop()
		select {
		case <-ctx.Done():
			t.settle()
		case <-t.done: // closed
		}
	}()
	return out, nil
}

func (s *sqliteSubscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs, acks := s.subs, s.acks
	s.mu.Unlock()
	for i, sub := range subs {
		acks[i].settle()
		_ = sub.Close()
		acks[i].close()
	}
	for _, tg := range s.anon {
		_, _ = s.broker.db.Exec(`DELETE FROM `+offsetsTable(tg[0])+` WHERE consumer_group = ?`, tg[1])
		forgetTurnLock(s.broker.path, tg[0], tg[1])
	}
	return nil
}

// Partitions implements Partitioner: partition i of n is the consumer group
// "group#i/n", reading the messages whose shard is i modulo n. When n
// differs from the last run's, the new partitions start from the lowest
// offset any old partition had acked, and the old offsets are removed, in
// one transaction.
func (b *sqliteBroker) Partitions(ctx context.Context, topic, group string, n int) ([]message.Subscriber, error) {
	if n < 1 {
		return nil, fmt.Errorf("partitions must be at least 1, not %d", n)
	}
	if err := b.initTopic(ctx, topic); err != nil {
		return nil, err
	}
	if err := b.repartition(ctx, topic, group, n); err != nil {
		return nil, fmt.Errorf("repartition %s for %s: %w", topic, group, err)
	}
	subs := make([]message.Subscriber, n)
	for i := range subs {
		s, err := b.Subscriber(PartitionGroup(group, i, n))
		if err != nil {
			return nil, err
		}
		subs[i] = s
	}
	return subs, nil
}

func (b *sqliteBroker) initTopic(ctx context.Context, topic string) error {
	qs, _ := sqliteSchema{}.SchemaInitializingQueries(wsql.SchemaInitializingQueriesParams{Topic: topic})
	oqs, _ := sqliteOffsets{}.SchemaInitializingQueries(wsql.OffsetsSchemaInitializingQueriesParams{Topic: topic})
	for _, q := range append(qs, oqs...) {
		if _, err := b.db.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return err
		}
	}
	return nil
}

func (b *sqliteBroker) repartition(ctx context.Context, topic, group string, n int) error {
	mine := map[string]bool{}
	for i := 0; i < n; i++ {
		mine[PartitionGroup(group, i, n)] = true
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT consumer_group, offset_acked, updated_at FROM `+offsetsTable(topic)+
		` WHERE consumer_group = ? OR substr(consumer_group, 1, ?) = ?`, group, len(group)+1, group+"#")
	if err != nil {
		return err
	}
	type row struct {
		group          string
		offset, update int64
	}
	var others []row
	var mineNewest int64 = -1
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.group, &r.offset, &r.update); err != nil {
			rows.Close()
			return err
		}
		if mine[r.group] {
			mineNewest = max(mineNewest, r.update)
		} else if _, _, ok := partitionOf(r.group); ok || r.group == group {
			others = append(others, r)
		}
	}
	rows.Close()
	if len(others) == 0 {
		return tx.Commit()
	}
	from, othersNewest := others[0].offset, others[0].update
	for _, r := range others {
		from, othersNewest = min(from, r.offset), max(othersNewest, r.update)
	}
	if othersNewest > mineNewest {
		for g := range mine {
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+offsetsTable(topic)+` (consumer_group, offset_acked) VALUES (?, ?)
				ON CONFLICT(consumer_group) DO UPDATE SET offset_acked = excluded.offset_acked, updated_at = excluded.updated_at`, g, from); err != nil {
				return err
			}
		}
	}
	for _, r := range others {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+offsetsTable(topic)+` WHERE consumer_group = ?`, r.group); err != nil {
			return err
		}
	}
	return tx.Commit()
}

var _ Partitioner = (*sqliteBroker)(nil)
