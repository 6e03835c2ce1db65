package brokers

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// streamRead is how many rows one query of a stream reads.
const streamRead = 1000

// Stream implements Streamer. The embedded queue has one partition per
// topic: the stream reads rows after the group's acked offset, and Commit
// moves that offset forward (never back). Members of one group in this
// process take turns as with subscriptions: the stream holds the group's
// turn for as long as it runs.
func (b *sqliteBroker) Stream(ctx context.Context, topic, group string, fn func(Stream) error) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if err := b.consume(group); err != nil {
		return err
	}
	if err := b.initTopic(ctx, topic); err != nil {
		return err
	}
	// A group that was read as partitions (Partitions, concurrency) goes
	// on from the lowest offset they had acked.
	if err := b.repartition(ctx, topic, group, 1); err != nil {
		return fmt.Errorf("repartition %s for %s: %w", topic, group, err)
	}
	turn := turnLock(b.path, topic, group)
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	defer func() { <-turn }()

	var from int64
	next, _ := sqliteOffsets{}.NextOffsetQuery(wsql.NextOffsetQueryParams{Topic: topic, ConsumerGroup: group})
	if err := b.db.QueryRowContext(ctx, next.Query, next.Args...).Scan(&from); err != nil {
		return fmt.Errorf("read offset of %s on %s: %w", group, topic, err)
	}
	readCtx, stop := context.WithCancel(ctx)
	s := &sqliteStream{b: b, topic: topic, group: group, msgs: make(chan *message.Message, streamRead), ctx: ctx}
	readErr := make(chan error, 1)
	go func() { readErr <- s.read(readCtx, from) }()
	err := fn(s)
	stop()
	for range s.msgs { // let the reader see the cancellation and close
	}
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	return err
}

type sqliteStream struct {
	b     *sqliteBroker
	topic string
	group string
	msgs  chan *message.Message
	ctx   context.Context
}

func (s *sqliteStream) Partition() int32                  { return 0 }
func (s *sqliteStream) Context() context.Context          { return s.ctx }
func (s *sqliteStream) Messages() <-chan *message.Message { return s.msgs }

// Commit stores msg's offset as the group's. It runs to the end even when
// ctx is being cancelled by a shutdown: the batch it acks is written.
func (s *sqliteStream) Commit(ctx context.Context, msg *message.Message) error {
	_, off, ok := Position(msg)
	if !ok {
		return fmt.Errorf("commit: message %s was not read from a stream", msg.UUID)
	}
	q, _ := sqliteOffsets{}.AckMessageQuery(wsql.AckMessageQueryParams{Topic: s.topic, ConsumerGroup: s.group, LastRow: wsql.Row{Offset: off}})
	_, err := s.b.db.ExecContext(context.WithoutCancel(ctx), q.Query, q.Args...)
	return err
}

// read sends the topic's rows after offset from until ctx ends, polling an
// exhausted topic every poll interval; it closes the channel when done. A
// failing query is retried (the database may be locked for a while).
func (s *sqliteStream) read(ctx context.Context, from int64) error {
	defer close(s.msgs)
	limit := sqliteSchema{maxBytes: s.b.cfg.maxBytes}.limit()
	query := `SELECT "offset", uuid, ` + boundedColumns(limit) + `, created_at FROM ` + messagesTable(s.topic) +
		` WHERE "offset" > ? ORDER BY "offset" LIMIT ` + fmt.Sprint(streamRead)
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		n, last, err := s.readOnce(ctx, query, from)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.b.logger.Error("stream read failed; retrying", err, nil)
		}
		from = max(from, last)
		if n == streamRead {
			continue
		}
		wait.Reset(s.b.cfg.poll)
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
		}
	}
}

func (s *sqliteStream) readOnce(ctx context.Context, query string, from int64) (n int, last int64, err error) {
	rows, err := s.b.db.QueryContext(ctx, query, from)
	if err != nil {
		return 0, from, err
	}
	defer rows.Close()
	last = from
	for rows.Next() {
		var (
			off     int64
			id      string
			payload []byte
			meta    sql.NullString
			plen    int64
			mlen    int64
			created int64
		)
		if err := rows.Scan(&off, &id, &payload, &meta, &plen, &mlen, &created); err != nil {
			return n, last, err
		}
		msg := message.NewMessage(id, payload)
		if why := TooLarge(id, plen, mlen, sqliteSchema{maxBytes: s.b.cfg.maxBytes}.limit()); why != "" {
			msg = RejectedMessage(id, why)
		} else if meta.Valid && meta.String != "" && meta.String != "{}" && meta.String != "null" {
			if err := json.Unmarshal([]byte(meta.String), &msg.Metadata); err != nil {
				// A damaged row still delivers its payload (a stuck stream
				// would hold up everything after it); the consumer sees why.
				msg.Metadata = message.Metadata{MetaUnreadable: "metadata is not JSON: " + err.Error()}
			}
		}
		SetPosition(msg, 0, off, time.UnixMilli(created).UTC())
		select {
		case s.msgs <- msg:
		case <-ctx.Done():
			return n, last, nil
		}
		n, last = n+1, off
	}
	return n, last, rows.Err()
}

var _ Streamer = (*sqliteBroker)(nil)
