package kafka

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/brokers"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// This file is the Kafka broker's brokers.Inspector; it uses only the broker's
// addresses, client settings, admin client and unmarshaler.

// inspectClient is a client that never creates a topic by asking about it.
func (b *broker) inspectClient() (sarama.Client, error) {
	cfg := b.sarama()
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.MaxWaitTime = b.cfg.maxWait
	c, err := sarama.NewClient(b.brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(b.brokers, ","), err)
	}
	return c, nil
}

// Topics implements brokers.Inspector: each topic (Kafka's internal ones left
// out) with the records its partitions hold (newest minus oldest offset),
// and each consumer group with committed offsets on it, its lag summed
// over partitions (a partition it never committed counts whole).
func (b *broker) Topics(ctx context.Context) ([]brokers.TopicInfo, error) {
	c, err := b.inspectClient()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	names, err := c.Topics()
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	type bounds struct{ oldest, newest int64 }
	offsets := map[string]map[int32]bounds{}
	var out []brokers.TopicInfo
	for _, t := range names {
		if strings.HasPrefix(t, "__") {
			continue
		}
		parts, err := c.Partitions(t)
		if err != nil {
			return nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		ti := brokers.TopicInfo{Name: t}
		offsets[t] = map[int32]bounds{}
		for _, p := range parts {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			newest, err := c.GetOffset(t, p, sarama.OffsetNewest)
			if err != nil {
				return nil, fmt.Errorf("offsets of %s/%d: %w", t, p, err)
			}
			oldest, err := c.GetOffset(t, p, sarama.OffsetOldest)
			if err != nil {
				return nil, fmt.Errorf("offsets of %s/%d: %w", t, p, err)
			}
			offsets[t][p] = bounds{oldest, newest}
			ti.Messages += newest - oldest
		}
		out = append(out, ti)
	}
	groups, err := b.admin.ListConsumerGroups()
	if err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	groupNames := make([]string, 0, len(groups))
	for g := range groups {
		groupNames = append(groupNames, g)
	}
	sort.Strings(groupNames)
	for _, g := range groupNames {
		res, err := b.admin.ListConsumerGroupOffsets(g, nil)
		if err != nil {
			return nil, fmt.Errorf("offsets of group %s: %w", g, err)
		}
		for i := range out {
			blocks, ok := res.Blocks[out[i].Name]
			if !ok || len(blocks) == 0 {
				continue
			}
			committed := false
			var lag int64
			for p, bd := range offsets[out[i].Name] {
				blk := blocks[p]
				if blk == nil || blk.Offset < 0 {
					lag += bd.newest - bd.oldest
					continue
				}
				committed = true
				lag += max(bd.newest-max(blk.Offset, bd.oldest), 0)
			}
			if committed {
				out[i].Groups = append(out[i].Groups, brokers.GroupInfo{Name: g, Lag: lag})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Tail implements brokers.Inspector with a partition consumer per partition and no
// consumer group: it commits nothing and joins no group. A topic missing
// at the start is waited for (and then read from its first record).
// Records of one partition come in order; partitions interleave.
func (b *broker) Tail(ctx context.Context, topic string, fromBeginning bool, fn func(brokers.Record) error) error {
	c, err := b.inspectClient()
	if err != nil {
		return err
	}
	defer c.Close()
	var parts []int32
	for {
		parts, err = c.Partitions(topic)
		if err == nil && len(parts) > 0 {
			break
		}
		if err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fmt.Errorf("tail %s: %w", topic, err)
		}
		fromBeginning = true // created after we started: all of it is new
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
		_ = c.RefreshMetadata(topic)
	}
	consumer, err := sarama.NewConsumerFromClient(c)
	if err != nil {
		return fmt.Errorf("tail %s: %w", topic, err)
	}
	defer consumer.Close()
	start := sarama.OffsetNewest
	if fromBeginning {
		start = sarama.OffsetOldest
	}
	ctx, cancel := context.WithCancel(ctx)
	recs := make(chan *sarama.ConsumerMessage)
	errs := make(chan error, len(parts))
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(topic, p, start)
		if err != nil {
			return fmt.Errorf("tail %s/%d: %w", topic, p, err)
		}
		wg.Go(func() {
			defer pc.AsyncClose()
			for {
				select {
				case <-ctx.Done():
					return
				case m, ok := <-pc.Messages():
					if !ok {
						return
					}
					select {
					case recs <- m:
					case <-ctx.Done():
						return
					}
				case err, ok := <-pc.Errors():
					if ok {
						errs <- err
					}
					return
				}
			}
		})
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return fmt.Errorf("tail %s: %w", topic, err)
		case rec := <-recs:
			msg, err := unmarshaler{b.cfg.maxBytes}.Unmarshal(rec)
			if err != nil {
				return fmt.Errorf("tail %s/%d@%d: %w", topic, rec.Partition, rec.Offset, err)
			}
			if err := fn(brokers.Record{Topic: topic, Partition: rec.Partition, Offset: rec.Offset, Time: rec.Timestamp.UTC(), Message: msg}); err != nil {
				return err
			}
		}
	}
}

var _ brokers.Inspector = (*broker)(nil)
