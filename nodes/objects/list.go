package objects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

const (
	listBucket = "bucket"
	listPrefix = "prefix"
	listLimit  = "limit"
	listOutput = "output"
	listField  = "field"
	listTopic  = "topic"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "storage.list",
		Summary: "List the objects under a prefix, in key order: into the payload, or one message per object to a topic.",
		Description: "Each object is {bucket, key, size, etag, content_type, modified}. With output: payload the list " +
			"is stored in the payload's `field`; with output: messages each object is published to `topic` when the " +
			"run succeeds (ids derived from the input's, so a retried run publishes the same messages). The result " +
			"is {bucket, prefix, count, truncated}: truncated is true when more than `limit` objects matched.",
		Fields: []nodes.Field{
			{Name: listBucket, Kind: nodes.Template, Default: "{{ object?.bucket }}", Role: nodes.RoleBucket, Doc: "Bucket; the triggering object's by default."},
			{Name: listPrefix, Kind: nodes.Template, Default: "", Doc: "Only keys starting with this; all keys when empty."},
			{Name: listLimit, Kind: nodes.Int, Default: 1000, Min: 1, Max: 1_000_000, Doc: "At most this many objects (the first in key order)."},
			{Name: listOutput, Kind: nodes.Enum, Options: []string{"payload", "messages"}, Default: "payload", Doc: "payload: store the list in the payload; messages: publish one message per object to topic."},
			{Name: listField, Kind: nodes.String, Default: "objects", Doc: "Payload field the list is stored in (output: payload)."},
			{Name: listTopic, Kind: nodes.Template, Role: nodes.RoleTopic, Doc: "Topic each object is published to (output: messages)."},
		},
		Examples: []nodes.Example{
			{Title: "The day's reports, into the payload", YAML: "node: storage.list\nwith:\n  bucket: reports\n  prefix: '{{ payload.day }}/'"},
			{Title: "Fan out a folder, one message per object", YAML: "node: storage.list\nwith:\n  bucket: uploads\n  prefix: batch-7/\n  output: messages\n  topic: resize"},
		},
		New: newList,
	})
}

type listNode struct {
	bucket, prefix *eval.Template
	limit          int
	messages       bool
	field          string
	topic          *eval.Template
	store          *storage.Store
}

func newList(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	n := &listNode{
		bucket: c.Template(listBucket), prefix: c.Template(listPrefix), limit: c.Int(listLimit),
		messages: c.String(listOutput) == "messages", field: c.String(listField), topic: c.Template(listTopic), store: d.Store,
	}
	switch {
	case n.messages && n.topic == nil:
		return nil, c.Errorf(listTopic, "required with output: messages")
	case !n.messages && n.topic != nil:
		return nil, c.Errorf(listTopic, "only used with output: messages")
	case n.messages && c.Has(listField):
		return nil, c.Errorf(listField, "only used with output: payload")
	case n.field == "":
		return nil, c.Errorf(listField, "must not be empty")
	}
	return n, nil
}

var errLimit = errors.New("limit reached")

func (n *listNode) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	b, err := n.bucket.Render(vars)
	if err != nil {
		return nodes.Permanent(err)
	}
	if b == "" {
		return nodes.Permanent(errors.New("bucket must not be empty (no triggering object?)"))
	}
	prefix, err := n.prefix.Render(vars)
	if err != nil {
		return nodes.Permanent(err)
	}
	var topic string
	if n.messages {
		if topic, err = n.topic.Render(vars); err != nil {
			return nodes.Permanent(err)
		}
		if topic == "" {
			return nodes.Permanent(fmt.Errorf("topic %q rendered empty", n.topic.Source()))
		}
	}
	objects := make([]any, 0, min(n.limit, 64))
	truncated := false
	err = n.store.List(ctx, b, prefix, func(o storage.ObjectInfo) error {
		if len(objects) == n.limit {
			truncated = true
			return errLimit
		}
		m := nodes.ObjectMap(o)
		m["modified"] = o.Modified.UTC().Format(time.RFC3339Nano)
		objects = append(objects, m)
		return nil
	})
	if err != nil && !errors.Is(err, errLimit) {
		return nodes.StorageError(fmt.Errorf("list %s/%s: %w", b, prefix, err))
	}
	if n.messages {
		for _, o := range objects {
			data, err := json.Marshal(o)
			if err != nil {
				return nodes.Permanent(err)
			}
			meta := maps.Clone(env.Meta)
			if meta == nil {
				meta = map[string]string{}
			}
			meta["content_type"] = "application/json"
			env.Emit(nodes.Output{Topic: topic, Payload: data, Meta: meta})
		}
	} else if err := env.SetPayloadField(n.field, objects); err != nil {
		return err
	}
	env.SetResult(map[string]any{"bucket": b, "prefix": prefix, "count": len(objects), "truncated": truncated})
	return nil
}

var _ nodes.Node = (*listNode)(nil)
