package brokers

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// validTopic is watermill-sql's rule for topic names; it also keeps
// topic names safe inside the quoted table names.
var validTopic = regexp.MustCompile(`^[A-Za-z0-9\-$:._]+$`)

// Topics implements Inspector: every table of messages, its row count, and
// each consumer group's lag (the rows after its acked offset; partitions
// of a group, "G#i/N", are summed under G). Private groups of
// subscriptions without a group are left out.
func (b *sqliteBroker) Topics(ctx context.Context) ([]TopicInfo, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 9) = 'sluice_q_' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var topics []string
	tables := map[string]bool{}
	for rows.Next() {
		var name, ddl string
		if err := rows.Scan(&name, &ddl); err != nil {
			rows.Close()
			return nil, err
		}
		tables[name] = true
		if strings.Contains(ddl, "uuid TEXT") { // a messages table, not an offsets one
			topics = append(topics, strings.TrimPrefix(name, "sluice_q_"))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]TopicInfo, 0, len(topics))
	for _, topic := range topics {
		ti := TopicInfo{Name: topic}
		if err := b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+messagesTable(topic)).Scan(&ti.Messages); err != nil {
			return nil, fmt.Errorf("count %s: %w", topic, err)
		}
		if tables["sluice_q_"+topic+"_offsets"] {
			if ti.Groups, err = b.groupLags(ctx, topic); err != nil {
				return nil, fmt.Errorf("lag of %s: %w", topic, err)
			}
		}
		out = append(out, ti)
	}
	return out, nil
}

func (b *sqliteBroker) groupLags(ctx context.Context, topic string) ([]GroupInfo, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT consumer_group, offset_acked FROM `+offsetsTable(topic))
	if err != nil {
		return nil, err
	}
	type acked struct {
		group  string
		offset int64
	}
	var all []acked
	for rows.Next() {
		var a acked
		if err := rows.Scan(&a.group, &a.offset); err != nil {
			rows.Close()
			return nil, err
		}
		if !strings.HasPrefix(a.group, anonGroupPrefix) {
			all = append(all, a)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	lags := map[string]int64{}
	for _, a := range all {
		base, cond := a.group, ""
		if i, n, ok := partitionOf(a.group); ok {
			base, cond = a.group[:strings.LastIndexByte(a.group, '#')], fmt.Sprintf(" AND shard %% %d = %d", n, i)
		}
		var lag int64
		if err := b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+messagesTable(topic)+` WHERE "offset" > ?`+cond, a.offset).Scan(&lag); err != nil {
			return nil, err
		}
		lags[base] += lag
	}
	var out []GroupInfo
	for g, lag := range lags {
		out = append(out, GroupInfo{Name: g, Lag: lag})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Tail implements Inspector by reading the topic's rows by offset, as no
// consumer group: it stores nothing and takes no group's turn. A topic
// whose table does not exist yet is polled for; its messages are then
// shown from the first.
func (b *sqliteBroker) Tail(ctx context.Context, topic string, fromBeginning bool, fn func(Record) error) error {
	if !validTopic.MatchString(topic) {
		return fmt.Errorf("topic %q: names hold only letters, digits and -$:._", topic)
	}
	table := messagesTable(topic)
	query := `SELECT "offset", uuid, payload, metadata, created_at FROM ` + table + ` WHERE "offset" > ? ORDER BY "offset" LIMIT 500`
	var from int64 = -1 // not yet known
	wait := time.NewTimer(0)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
		}
		if from < 0 {
			var exists int
			err := b.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, strings.Trim(table, `"`)).Scan(&exists)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				return fmt.Errorf("tail %s: %w", topic, err)
			case exists == 0:
				fromBeginning = true // created after we started: all of it is new
				wait.Reset(b.cfg.poll)
				continue
			case fromBeginning:
				from = 0
			default:
				if err := b.db.QueryRowContext(ctx, `SELECT COALESCE(MAX("offset"), 0) FROM `+table).Scan(&from); err != nil {
					return fmt.Errorf("tail %s: %w", topic, err)
				}
			}
		}
		n, err := b.tailOnce(ctx, topic, query, &from, fn)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if n < 500 {
			wait.Reset(b.cfg.poll)
		} else {
			wait.Reset(0)
		}
	}
}

func (b *sqliteBroker) tailOnce(ctx context.Context, topic, query string, from *int64, fn func(Record) error) (int, error) {
	rows, err := b.db.QueryContext(ctx, query, *from)
	if err != nil {
		return 0, fmt.Errorf("tail %s: %w", topic, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			off     int64
			id      string
			payload []byte
			meta    sql.NullString
			created int64
		)
		if err := rows.Scan(&off, &id, &payload, &meta, &created); err != nil {
			return n, fmt.Errorf("tail %s: %w", topic, err)
		}
		msg := message.NewMessage(id, payload)
		if meta.Valid && meta.String != "" {
			if err := json.Unmarshal([]byte(meta.String), &msg.Metadata); err != nil {
				msg.Metadata = message.Metadata{MetaUnreadable: "metadata is not JSON: " + err.Error()}
			}
		}
		*from, n = off, n+1
		if err := fn(Record{Topic: topic, Offset: off, Time: time.UnixMilli(created).UTC(), Message: msg}); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return n, fmt.Errorf("tail %s: %w", topic, err)
	}
	return n, nil
}

var _ Inspector = (*sqliteBroker)(nil)
