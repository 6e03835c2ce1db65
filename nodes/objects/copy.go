package objects

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

const (
	copyBucket   = "bucket"
	copyKey      = "key"
	copyToBucket = "to_bucket"
	copyToKey    = "to_key"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "storage.copy",
		Summary: "Copy an object to another key or bucket (server-side on s3://); the source stays.",
		Description: "The result (bucket, key, etag, size of the copy) is available as steps.<id>. " +
			"Copying again replaces the copy, so a retried run is harmless. To move an object, follow " +
			"with storage.delete of the source.",
		Fields: []nodes.Field{
			{Name: copyBucket, Kind: nodes.Template, Default: "{{ object?.bucket }}", Role: nodes.RoleBucket, Doc: "Source bucket; the triggering object's by default."},
			{Name: copyKey, Kind: nodes.Template, Default: "{{ object?.key }}", Doc: "Source key; the triggering object's by default."},
			{Name: copyToBucket, Kind: nodes.Template, Role: nodes.RoleBucket, Doc: "Destination bucket; the source's by default."},
			{Name: copyToKey, Kind: nodes.Template, Doc: "Destination key; the source's by default."},
		},
		Examples: []nodes.Example{
			{Title: "Keep an original in an archive bucket", YAML: "node: storage.copy\nwith:\n  to_bucket: originals"},
			{Title: "Copy under another prefix", YAML: "node: storage.copy\nwith:\n  to_key: 'processed/{{ object.key }}'"},
		},
		New: newCopy,
	})
}

type copyNode struct {
	bucket, key, toBucket, toKey *eval.Template
	store                        *storage.Store
}

func newCopy(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	if !c.Has(copyToBucket) && !c.Has(copyToKey) {
		return nil, c.Errorf("", "set %q or %q (or both): copying an object onto itself does nothing", copyToBucket, copyToKey)
	}
	n := &copyNode{
		bucket: c.Template(copyBucket), key: c.Template(copyKey),
		toBucket: c.Template(copyToBucket), toKey: c.Template(copyToKey), store: d.Store,
	}
	if n.toBucket == nil {
		n.toBucket = n.bucket
	}
	if n.toKey == nil {
		n.toKey = n.key
	}
	return n, nil
}

func (n *copyNode) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	b, k, err := target(ctx, vars, n.bucket, n.key)
	if err != nil {
		return err
	}
	tb, tk, err := target(ctx, vars, n.toBucket, n.toKey)
	if err != nil {
		return err
	}
	info, err := n.store.Copy(ctx, b, k, tb, tk)
	if err != nil {
		return nodes.StorageError(fmt.Errorf("copy %s/%s to %s/%s: %w", b, k, tb, tk, err))
	}
	env.CountWritten(info.Size)
	env.Wrote(tb, tk)
	env.SetResult(nodes.ObjectMap(info))
	return nil
}

var _ nodes.Node = (*copyNode)(nil)
