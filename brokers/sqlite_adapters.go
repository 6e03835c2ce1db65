package brokers

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// sqliteSchema is watermill-sql's SchemaAdapter for SQLite: one table per
// topic, "offset" an autoincrement key so offsets only grow. Topic names
// are limited by watermill-sql to [A-Za-z0-9-$:._]; identifiers are quoted.
//
// maxBytes bounds messages both ways: InsertQuery refuses a larger one, and
// SelectQuery reads a stored row over it (written by an older version or
// another tool) without its payload, delivered as rejected (MetaRejected).
type sqliteSchema struct {
	batch    int
	maxBytes int64
}

func messagesTable(topic string) string { return `"sluice_q_` + topic + `"` }
func offsetsTable(topic string) string  { return `"sluice_q_` + topic + `_offsets"` }

func (s sqliteSchema) SchemaInitializingQueries(p wsql.SchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + messagesTable(p.Topic) + ` (
		"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
		uuid TEXT NOT NULL,
		created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
		payload BLOB,
		metadata TEXT,
		shard INTEGER NOT NULL DEFAULT 0
	)`}}, nil
}

// shardOf spreads messages over partitions: by partition key when there is
// one, else by id.
func shardOf(m *message.Message) int64 {
	h := fnv.New32a()
	if k := m.Metadata.Get(MetaPartitionKey); k != "" {
		h.Write([]byte(k))
	} else {
		h.Write([]byte(m.UUID))
	}
	return int64(h.Sum32() & 0x7fffffff)
}

// partitionOf parses a partition consumer group "G#i/N".
func partitionOf(group string) (i, n int, ok bool) {
	j := strings.LastIndexByte(group, '#')
	if j < 0 {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(group[j+1:], "%d/%d", &i, &n); err != nil || n < 2 || i < 0 || i >= n {
		return 0, 0, false
	}
	return i, n, true
}

// PartitionGroup names partition i of n of a consumer group.
func PartitionGroup(group string, i, n int) string {
	if n <= 1 {
		return group
	}
	return fmt.Sprintf("%s#%d/%d", group, i, n)
}

func (s sqliteSchema) InsertQuery(p wsql.InsertQueryParams) (wsql.Query, error) {
	if err := CheckPublish(p.Topic, s.limit(), p.Msgs); err != nil {
		return wsql.Query{}, err
	}
	args := make([]any, 0, 3*len(p.Msgs))
	for _, m := range p.Msgs {
		meta, err := json.Marshal(m.Metadata)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("marshal metadata of message %s: %w", m.UUID, err)
		}
		args = append(args, m.UUID, []byte(m.Payload), string(meta), shardOf(m))
	}
	return wsql.Query{
		Query: `INSERT INTO ` + messagesTable(p.Topic) + ` (uuid, payload, metadata, shard) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?,?,?,?),", len(p.Msgs)), ","),
		Args: args,
	}, nil
}

func (s sqliteSchema) SelectQuery(p wsql.SelectQueryParams) (wsql.Query, error) {
	next, err := p.OffsetsAdapter.NextOffsetQuery(wsql.NextOffsetQueryParams{Topic: p.Topic, ConsumerGroup: p.ConsumerGroup})
	if err != nil {
		return wsql.Query{}, err
	}
	part := ""
	if i, n, ok := partitionOf(p.ConsumerGroup); ok {
		part = fmt.Sprintf(" AND shard %% %d = %d", n, i)
	}
	return wsql.Query{
		Query: `SELECT "offset", uuid, ` + boundedColumns(s.limit()) + ` FROM ` + messagesTable(p.Topic) +
			` WHERE "offset" > (` + next.Query + `)` + part + ` ORDER BY "offset" LIMIT ` + fmt.Sprint(s.batch),
		Args: next.Args,
	}, nil
}

// limit is maxBytes, or the default for a schema made without one.
func (s sqliteSchema) limit() int64 {
	if s.maxBytes > 0 {
		return s.maxBytes
	}
	return DefaultMaxMessageBytes
}

// boundedColumns selects payload, metadata and their sizes, leaving out
// payload and metadata of a row over the limits, so SQLite never hands
// over a payload over limit or metadata over MaxMetadataBytes.
func boundedColumns(limit int64) string {
	plen := `COALESCE(length(CAST(payload AS BLOB)), 0)`
	mlen := `COALESCE(length(CAST(metadata AS BLOB)), 0)`
	over := fmt.Sprintf(`%s > %d OR %s > %d`, plen, limit, mlen, MaxMetadataBytes)
	return fmt.Sprintf(`CASE WHEN %[1]s THEN NULL ELSE payload END, CASE WHEN %[1]s THEN NULL ELSE metadata END, %[2]s, %[3]s`, over, plen, mlen)
}

func (s sqliteSchema) UnmarshalMessage(p wsql.UnmarshalMessageParams) (wsql.Row, error) {
	var r wsql.Row
	var meta sql.NullString
	var plen, mlen int64
	if err := p.Row.Scan(&r.Offset, &r.UUID, &r.Payload, &meta, &plen, &mlen); err != nil {
		return wsql.Row{}, fmt.Errorf("scan message row: %w", err)
	}
	if why := TooLarge(string(r.UUID), plen, mlen, s.limit()); why != "" {
		r.Msg = RejectedMessage(string(r.UUID), why)
		return r, nil
	}
	r.Metadata = []byte(meta.String)
	msg := message.NewMessage(string(r.UUID), r.Payload)
	if meta.Valid && meta.String != "" {
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			return wsql.Row{}, fmt.Errorf("metadata of message %s is not JSON: %w", r.UUID, err)
		}
	}
	r.Msg = msg
	return r, nil
}

// SubscribeIsolationLevel is unused: sqliteBeginner opens no SQL transaction.
func (s sqliteSchema) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelDefault }

// sqliteOffsets is watermill-sql's OffsetsAdapter for SQLite: one row per
// consumer group holding the highest acked offset. Acks only move it
// forward, so a late ack from a slower subscription never rewinds it.
type sqliteOffsets struct{}

func (sqliteOffsets) SchemaInitializingQueries(p wsql.OffsetsSchemaInitializingQueriesParams) ([]wsql.Query, error) {
	return []wsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + offsetsTable(p.Topic) + ` (
		consumer_group TEXT NOT NULL PRIMARY KEY,
		offset_acked INTEGER NOT NULL,
		updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
	)`}}, nil
}

func (sqliteOffsets) AckMessageQuery(p wsql.AckMessageQueryParams) (wsql.Query, error) {
	return wsql.Query{
		Query: `INSERT INTO ` + offsetsTable(p.Topic) + ` (consumer_group, offset_acked) VALUES (?, ?)
			ON CONFLICT(consumer_group) DO UPDATE SET
				offset_acked = MAX(offset_acked, excluded.offset_acked),
				updated_at = excluded.updated_at`,
		Args: []any{p.ConsumerGroup, p.LastRow.Offset},
	}, nil
}

func (sqliteOffsets) ConsumedMessageQuery(wsql.ConsumedMessageQueryParams) (wsql.Query, error) {
	return wsql.Query{}, nil
}

func (sqliteOffsets) NextOffsetQuery(p wsql.NextOffsetQueryParams) (wsql.Query, error) {
	return wsql.Query{
		Query: `SELECT COALESCE((SELECT offset_acked FROM ` + offsetsTable(p.Topic) + ` WHERE consumer_group = ?), 0)`,
		Args:  []any{p.ConsumerGroup},
	}, nil
}

func (sqliteOffsets) BeforeSubscribingQueries(wsql.BeforeSubscribingQueriesParams) ([]wsql.Query, error) {
	return nil, nil
}

// sqliteBeginner gives watermill-sql's subscriber the transaction shape it
// expects without holding a SQLite transaction while a handler runs.
//
// watermill-sql reads a batch, hands each message to the handler, waits for
// the ack, then stores the offset, all "inside" one transaction. In SQLite a
// transaction that writes holds the database's only write lock: held across
// a handler it would block every publisher (including the handler's own
// outputs) until the batch is done. So here reads and the offset write each
// run in autocommit (the offset upsert is one atomic statement), and what a
// transaction gave the other databases, one group member reading at a time,
// comes from the turn lock: BeginTx takes it, Commit or Rollback frees it.
type sqliteBeginner struct {
	db   *sql.DB
	turn chan struct{} // nil for the publisher, which needs no turns
}

func (b *sqliteBroker) beginner(turn chan struct{}) sqliteBeginner {
	return sqliteBeginner{db: b.db, turn: turn}
}

func (b sqliteBeginner) BeginTx(ctx context.Context, _ *sql.TxOptions) (wsql.Tx, error) {
	if b.turn != nil {
		select {
		case b.turn <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &sqliteTx{b: b}, nil
}

func (b sqliteBeginner) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	return b.db.ExecContext(ctx, query, args...)
}

func (b sqliteBeginner) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	return b.db.QueryContext(ctx, query, args...)
}

type sqliteTx struct {
	b    sqliteBeginner
	once sync.Once
}

func (t *sqliteTx) release() {
	t.once.Do(func() {
		if t.b.turn != nil {
			<-t.b.turn
		}
	})
}

func (t *sqliteTx) Commit() error   { t.release(); return nil }
func (t *sqliteTx) Rollback() error { t.release(); return nil }

// ExecContext runs the subscriber's offset write, which stores the acks of
// messages already handled: it runs to the end even when the subscription
// is being cancelled (shutdown), or those messages would be delivered
// again after a clean stop.
func (t *sqliteTx) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	return t.b.db.ExecContext(context.WithoutCancel(ctx), query, args...)
}

func (t *sqliteTx) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	return t.b.db.QueryContext(ctx, query, args...)
}

var (
	turnsMu sync.Mutex
	turns   = map[[3]string]chan struct{}{}
)

// turnLock returns the lock shared by every subscription of one consumer
// group to one topic of one database file in this process.
func turnLock(path, topic, group string) chan struct{} {
	turnsMu.Lock()
	defer turnsMu.Unlock()
	k := [3]string{path, topic, group}
	if turns[k] == nil {
		turns[k] = make(chan struct{}, 1)
	}
	return turns[k]
}

func forgetTurnLock(path, topic, group string) {
	turnsMu.Lock()
	defer turnsMu.Unlock()
	delete(turns, [3]string{path, topic, group})
}
