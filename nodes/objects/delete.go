package objects

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

const (
	deleteBucket = "bucket"
	deleteKey    = "key"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "storage.delete",
		Summary: "Delete an object; deleting one that is already gone succeeds, so a retried run is harmless.",
		Description: "The result is {bucket, key, existed}: existed is false when there was nothing to delete. " +
			"A bucket flow with `events: [removed]` is triggered by the deletion.",
		Fields: []nodes.Field{
			{Name: deleteBucket, Kind: nodes.Template, Default: "{{ object?.bucket }}", Role: nodes.RoleBucket, Doc: "Bucket; the triggering object's by default."},
			{Name: deleteKey, Kind: nodes.Template, Default: "{{ object?.key }}", Doc: "Key; the triggering object's by default."},
		},
		Examples: []nodes.Example{
			{Title: "Remove an upload once processed", YAML: "node: storage.delete"},
			{Title: "Move: copy, then delete the source", YAML: "node: storage.delete\nwith:\n  bucket: inbox\n  key: '{{ steps.archived.key }}'"},
		},
		New: newDelete,
	})
}

type deleteNode struct {
	bucket, key *eval.Template
	store       *storage.Store
}

func newDelete(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	return &deleteNode{bucket: c.Template(deleteBucket), key: c.Template(deleteKey), store: d.Store}, nil
}

func (n *deleteNode) Process(ctx context.Context, env *nodes.Envelope) error {
	b, k, err := target(ctx, env.Vars(), n.bucket, n.key)
	if err != nil {
		return err
	}
	existed := true
	if _, err := n.store.Stat(ctx, b, k); err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return nodes.StorageError(fmt.Errorf("delete %s/%s: %w", b, k, err))
		}
		existed = false
	}
	if existed {
		if err := n.store.Delete(ctx, b, k); err != nil {
			return nodes.StorageError(fmt.Errorf("delete %s/%s: %w", b, k, err))
		}
	}
	env.SetResult(map[string]any{"bucket": b, "key": k, "existed": existed})
	return nil
}

var _ nodes.Node = (*deleteNode)(nil)
