package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluicehq/sluice/state"
)

// maxLineageDepth bounds how far `runs show --tree` follows parents and
// children (a loop through flows is dead-lettered long before).
const maxLineageDepth = 64

// maxChildren bounds the children listed per run.
const maxChildren = 1000

// runNode is a run in a lineage tree.
type runNode struct {
	state.Run
	// Selected marks the run the tree was asked for.
	Selected bool       `json:"selected,omitempty"`
	Children []*runNode `json:"children,omitempty"`
}

// oneRun reads the run id.
func oneRun(ctx context.Context, st *state.DB, id string) (state.Run, error) {
	runs, err := st.Runs(ctx, state.Filter{ID: id, Limit: 1})
	if err != nil {
		return state.Run{}, err
	}
	if len(runs) == 0 {
		return state.Run{}, fmt.Errorf("no run %q (see 'sluice runs')", id)
	}
	return runs[0], nil
}

// lineage is r's lineage as a tree: rooted at its oldest known ancestor,
// one child per generation down to r, then every run r's outputs fed,
// recursively. A parent no longer recorded (pruned) ends the chain.
func lineage(ctx context.Context, st *state.DB, r state.Run) (*runNode, error) {
	node := &runNode{Run: r, Selected: true}
	if err := addChildren(ctx, st, node, 0); err != nil {
		return nil, err
	}
	seen := map[string]bool{r.ID: true}
	for depth := 0; node.Parent != "" && depth < maxLineageDepth; depth++ {
		if seen[node.Parent] {
			break
		}
		parents, err := st.Runs(ctx, state.Filter{ID: node.Parent, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(parents) == 0 {
			break
		}
		seen[node.Parent] = true
		node = &runNode{Run: parents[0], Children: []*runNode{node}}
	}
	return node, nil
}

// addChildren adds the runs n's outputs fed, oldest first, and theirs.
func addChildren(ctx context.Context, st *state.DB, n *runNode, depth int) error {
	if depth >= maxLineageDepth {
		return nil
	}
	kids, err := st.Runs(ctx, state.Filter{Parent: n.ID, Limit: maxChildren})
	if err != nil {
		return err
	}
	for i := len(kids) - 1; i >= 0; i-- { // Runs lists newest first
		c := &runNode{Run: kids[i]}
		if err := addChildren(ctx, st, c, depth+1); err != nil {
			return err
		}
		n.Children = append(n.Children, c)
	}
	return nil
}

// printTree prints n and its children, one run a line.
func printTree(w io.Writer, n *runNode, first, rest string) {
	mark := ""
	if n.Selected {
		mark = " *"
	}
	errText := ""
	if n.Error != "" {
		errText = "  " + clip(safe(n.Error), 80)
	}
	fmt.Fprintf(w, "%s%s  %s  %s  %s  %s  %s%s%s\n", first, safe(n.ID), safe(n.Flow), n.Status, safe(n.Trigger), safe(n.Input),
		n.Started.Local().Format(time.DateTime), mark, errText)
	for i, c := range n.Children {
		if i == len(n.Children)-1 {
			printTree(w, c, rest+"└─ ", rest+"   ")
		} else {
			printTree(w, c, rest+"├─ ", rest+"│  ")
		}
	}
}
