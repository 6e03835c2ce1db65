package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluicehq/sluice/state"
)

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

// printTree prints n and its children, one run a line.
func printTree(w io.Writer, n *state.LineageNode, first, rest string) {
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
