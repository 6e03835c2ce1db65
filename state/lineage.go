package state

import (
	"context"
	"errors"
	"fmt"
)

// MaxLineageDepth bounds how far Lineage follows parents and children (a
// loop through flows is dead-lettered long before).
const MaxLineageDepth = 64

// maxChildren bounds the children listed per run.
const maxChildren = 1000

// ErrNoRun is returned for a run id that is not recorded.
var ErrNoRun = errors.New("no such run")

// LineageNode is a run in a lineage tree.
type LineageNode struct {
	Run
	// Selected marks the run the tree was asked for.
	Selected bool           `json:"selected,omitempty"`
	Children []*LineageNode `json:"children,omitempty"`
}

// Lineage is the lineage of run id as a tree: rooted at its oldest
// recorded ancestor, one child per generation down to the run (Selected),
// then every run its outputs fed, recursively, oldest first. A parent no
// longer recorded (pruned) ends the chain upward. An unknown id is
// ErrNoRun.
func (d *DB) Lineage(ctx context.Context, id string) (*LineageNode, error) {
	runs, err := d.Runs(ctx, Filter{ID: id, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("%w %q", ErrNoRun, id)
	}
	node := &LineageNode{Run: runs[0], Selected: true}
	seen := map[string]bool{id: true}
	if err := d.addChildren(ctx, node, 0, seen); err != nil {
		return nil, err
	}
	for depth := 0; node.Parent != "" && !seen[node.Parent] && depth < MaxLineageDepth; depth++ {
		parents, err := d.Runs(ctx, Filter{ID: node.Parent, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(parents) == 0 {
			break
		}
		seen[node.Parent] = true
		node = &LineageNode{Run: parents[0], Children: []*LineageNode{node}}
	}
	return node, nil
}

// addChildren adds the runs n's outputs fed, oldest first, and theirs;
// a run already in the tree (a loop of parents) is not added again.
func (d *DB) addChildren(ctx context.Context, n *LineageNode, depth int, seen map[string]bool) error {
	if depth >= MaxLineageDepth {
		return nil
	}
	kids, err := d.Runs(ctx, Filter{Parent: n.ID, Limit: maxChildren})
	if err != nil {
		return err
	}
	for i := len(kids) - 1; i >= 0; i-- { // Runs lists newest first
		if seen[kids[i].ID] {
			continue
		}
		seen[kids[i].ID] = true
		c := &LineageNode{Run: kids[i]}
		if err := d.addChildren(ctx, c, depth+1, seen); err != nil {
			return err
		}
		n.Children = append(n.Children, c)
	}
	return nil
}
