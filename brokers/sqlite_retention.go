package brokers

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// pruneChunk bounds one DELETE, so publishers wait for the write lock for
// a few milliseconds at most.
const pruneChunk = 5000

// Prune implements Pruner for the embedded queue: from every topic, the
// messages stored before cutoff that every consumer group of the topic has
// acked; on a topic no group reads (yet), every message before cutoff, as
// Kafka's retention would. A message a group has not acked is never
// deleted, however old.
func (b *sqliteBroker) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT m.name FROM sqlite_master AS m WHERE m.type = 'table' AND m.name LIKE 'sluice_q_%'
		AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) AS c WHERE c.name = 'payload')`)
	if err != nil {
		return 0, err
	}
	var topics []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return 0, err
		}
		topics = append(topics, strings.TrimPrefix(name, "sluice_q_"))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var total int64
	for _, topic := range topics {
		n, err := b.pruneTopic(ctx, topic, cutoff)
		total += n
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", topic, err)
		}
	}
	return total, nil
}

func (b *sqliteBroker) pruneTopic(ctx context.Context, topic string, cutoff time.Time) (int64, error) {
	upTo := int64(math.MaxInt64)
	var hasOffsets int
	if err := b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
		strings.Trim(offsetsTable(topic), `"`)).Scan(&hasOffsets); err != nil {
		return 0, err
	}
	if hasOffsets > 0 {
		var low *int64
		if err := b.db.QueryRowContext(ctx, `SELECT MIN(offset_acked) FROM `+offsetsTable(topic)).Scan(&low); err != nil {
			return 0, err
		}
		if low != nil {
			upTo = *low
		}
	}
	del := `DELETE FROM ` + messagesTable(topic) + ` WHERE "offset" IN (SELECT "offset" FROM ` + messagesTable(topic) +
		` WHERE created_at < ? AND "offset" <= ? ORDER BY "offset" LIMIT ` + fmt.Sprint(pruneChunk) + `)`
	var total int64
	for {
		res, err := b.db.ExecContext(ctx, del, cutoff.UnixMilli(), upTo)
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

// pruneLoop prunes messages older than the retention at start and then
// every hour, until ctx ends (the broker closes).
func (b *sqliteBroker) pruneLoop(ctx context.Context, retention time.Duration) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := b.Prune(ctx, time.Now().Add(-retention))
		if err != nil && ctx.Err() == nil {
			b.logger.Error("queue retention: prune failed", err, nil)
		} else if n > 0 {
			b.logger.Info("queue retention: pruned consumed messages", watermill.LogFields{"messages": n, "older_than": retention.String()})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var _ Pruner = (*sqliteBroker)(nil)
