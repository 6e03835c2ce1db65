// Package objects holds the bucket nodes: storage.get, storage.put,
// storage.copy, storage.delete, storage.list and storage.presign.
package objects

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

const (
	getBucket   = "bucket"
	getKey      = "key"
	getAs       = "as"
	getMaxBytes = "max_bytes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "storage.get",
		Summary: "Load an object: as the body (read lazily, when a later step needs it) or parsed into the JSON payload.",
		Fields: []nodes.Field{
			{Name: getBucket, Kind: nodes.Template, Default: "{{ object?.bucket }}", Role: nodes.RoleBucket, Doc: "Bucket; the triggering object's by default."},
			{Name: getKey, Kind: nodes.Template, Default: "{{ object?.key }}", Doc: "Key; the triggering object's by default."},
			{Name: getAs, Kind: nodes.Enum, Options: []string{"body", "payload"}, Default: "body", Doc: "body: the object becomes the message body; payload: its JSON content becomes the payload."},
			{Name: getMaxBytes, Kind: nodes.Int, Default: 256 << 20, Min: 1, Max: 1 << 40, Doc: "Refuse objects larger than this (a permanent error)."},
		},
		Examples: []nodes.Example{{Title: "Load a config object as the payload", YAML: "node: storage.get\nwith:\n  bucket: configs\n  key: 'customers/{{ payload.customer }}.json'\n  as: payload"}},
		New:      newGet,
	})
}

type get struct {
	bucket, key *eval.Template
	asPayload   bool
	max         int64
	store       *storage.Store
}

func newGet(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	return &get{
		bucket: c.Template(getBucket), key: c.Template(getKey),
		asPayload: c.String(getAs) == "payload", max: int64(c.Int(getMaxBytes)), store: d.Store,
	}, nil
}

// target renders a bucket and key template pair.
func target(ctx context.Context, vars eval.Vars, bucket, key *eval.Template) (string, string, error) {
	b, err := bucket.RenderContext(ctx, vars)
	if err != nil {
		return "", "", nodes.ExprError(err)
	}
	k, err := key.RenderContext(ctx, vars)
	if err != nil {
		return "", "", nodes.ExprError(err)
	}
	if b == "" || k == "" {
		return "", "", nodes.Permanent(fmt.Errorf("bucket %q and key %q must not be empty (no triggering object?)", b, k))
	}
	return b, k, nil
}

func (g *get) Process(ctx context.Context, env *nodes.Envelope) error {
	b, k, err := target(ctx, env.Vars(), g.bucket, g.key)
	if err != nil {
		return err
	}
	if g.asPayload {
		data, info, err := g.store.ReadAll(ctx, b, k, g.max)
		if err != nil {
			return nodes.StorageError(err)
		}
		env.CountRead(int64(len(data)))
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nodes.Permanent(fmt.Errorf("%s/%s is not JSON: %w", b, k, err))
		}
		env.Payload = v
		env.SetResult(nodes.ObjectMap(info))
		return nil
	}
	info, err := g.store.Stat(ctx, b, k)
	if err != nil {
		return nodes.StorageError(err)
	}
	if info.Size > g.max {
		return nodes.Permanent(fmt.Errorf("%s/%s is %d bytes, over max_bytes %d: %w", b, k, info.Size, g.max, storage.ErrTooLarge))
	}
	env.SetObject(info)
	env.SetResult(nodes.ObjectMap(info))
	return nil
}

var _ nodes.Node = (*get)(nil)
