package flows

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/storage"
)

// bridge turns a bucket's object events into messages on its bucket topic,
// where bucket-triggered flows consume them durably. It runs until ctx
// ends, restarting the watch after errors.
//
// An object version (bucket, key, etag) is published once: the state
// database remembers what was published, so a restart does not replay the
// bucket. It is marked after the publish succeeded, so a crash in between
// publishes it again (same message id) rather than losing it.
func (e *Engine) bridge(ctx context.Context, bucket string) {
	log := e.log.With("bucket", bucket)
	_, _ = retry(ctx, forever, func() error {
		events := make(chan storage.ObjectEvent, 256)
		done := make(chan error, 1)
		go func() { done <- e.opts.Store.Watch(ctx, bucket, events) }()
		err := e.forward(ctx, bucket, events, done)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("the watch ended")
		}
		return err
	}, func(err error, wait time.Duration) {
		log.Error("bucket watch failed; restarting", "error", err, "wait", wait)
	})
}

func (e *Engine) forward(ctx context.Context, bucket string, events <-chan storage.ObjectEvent, done <-chan error) error {
	for {
		select {
		case err := <-done:
			return err
		case ev := <-events:
			if err := e.publishEvent(ctx, bucket, ev); err != nil {
				return err
			}
		}
	}
}

func (e *Engine) publishEvent(ctx context.Context, bucket string, ev storage.ObjectEvent) error {
	versioned := ev.Created() && ev.ETag != ""
	if versioned && e.opts.State != nil {
		seen, err := e.opts.State.Seen(ctx, ev.Bucket, ev.Key, ev.ETag)
		if err != nil {
			return err
		}
		if seen {
			e.m.events.WithLabelValues(bucket, "repeat").Inc()
			return nil
		}
		if ev.Generation, err = e.opts.State.Generation(ctx, ev.Bucket, ev.Key); err != nil {
			return err
		}
	}
	if ev.Removed() && e.opts.State != nil {
		// What was seen of the key is gone: the same version uploaded again
		// is a new input (of the next generation), not a repeat.
		if err := e.opts.State.Forget(ctx, ev.Bucket, ev.Key); err != nil {
			return err
		}
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	id := derivedID(objectIdentity(ev), ev.Name)
	if ev.Created() {
		// Existing and Put events of one version are one event.
		id = derivedID(objectIdentity(ev), "created")
	}
	msg := message.NewMessage(id, data)
	msg.Metadata.Set("content_type", "application/json")
	if _, err := retry(ctx, forever, func() error { return e.opts.Broker.Publisher().Publish(BucketTopic(bucket), msg) },
		func(err error, wait time.Duration) {
			e.log.Error("publishing bucket event failed; retrying", "bucket", bucket, "key", ev.Key, "error", err, "wait", wait)
		}); err != nil {
		return err
	}
	e.m.events.WithLabelValues(bucket, "published").Inc()
	if versioned && e.opts.State != nil {
		// Published: record it even when shutdown is cancelling ctx, or
		// the next start would publish the version again.
		if _, err := e.opts.State.MarkSeen(context.WithoutCancel(ctx), ev.Bucket, ev.Key, ev.ETag); err != nil {
			return err
		}
	}
	return nil
}

// eventsHandler consumes a topic of S3, MinIO or COS notification records
// (MinIO's Kafka target writes them) and feeds each event of a triggered
// bucket through the same path as the watcher's. A record that is not a
// notification goes to <topic>.dlq; a failed publish nacks, so the records
// are read again.
func (e *Engine) eventsHandler(topic string, buckets map[string]bool) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		events, err := storage.ParseEvents(msg.Payload)
		if err != nil {
			e.log.Error("not a bucket notification; dead-lettered", "topic", topic, "error", err)
			dl := message.NewMessage(derivedID(msg.UUID, topic+"/dead-letter"), msg.Payload)
			dl.Metadata.Set(MetaError, err.Error())
			dl.Metadata.Set(MetaSourceTopic, topic)
			dl.Metadata.Set(MetaSourceID, msg.UUID)
			return e.opts.Broker.Publisher().Publish(topic+".dlq", dl)
		}
		for _, ev := range events {
			if !buckets[ev.Bucket] {
				continue
			}
			if err := e.publishEvent(msg.Context(), ev.Bucket, ev); err != nil {
				return err
			}
		}
		return nil
	}
}

// eventTopics maps each events_topic to the buckets whose triggers read it.
func (e *Engine) eventTopics() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, f := range e.flows {
		if b := f.Trigger.Bucket; b != nil && b.EventsTopic != "" {
			if out[b.EventsTopic] == nil {
				out[b.EventsTopic] = map[string]bool{}
			}
			out[b.EventsTopic][b.Bucket] = true
		}
	}
	return out
}

// objectIdentity is an object version's input identity: bucket/key@etag,
// with #generation once the key was removed and created again.
func objectIdentity(ev storage.ObjectEvent) string {
	id := ev.Bucket + "/" + ev.Key + "@" + ev.ETag
	if ev.Generation > 0 {
		id += "#" + strconv.Itoa(ev.Generation)
	}
	return id
}
