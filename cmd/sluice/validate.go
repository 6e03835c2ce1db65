package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
)

func validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check flow files: every problem at once, each at file:line:col (exit code 2 on problems)",
		Long: `Validate parses flow files (folders are searched for *.yaml and *.yml), checks
them against the node specs, compiles every expression and template, and
constructs every node, without starting anything. All problems are printed,
each with its position; the exit code is 2 when there are any.`,
		Example: "  sluice validate examples/\n  sluice validate flows/orders.yaml",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl, err := flows.Loader{Registry: registry()}.Load(args...)
			var probs nodes.Problems
			if errors.As(err, &probs) {
				return exitError{2, fmt.Errorf("%s\n%d problem(s)", probs.Error(), len(probs))}
			}
			if err != nil {
				return err
			}
			files := map[string]bool{}
			for _, f := range fl {
				files[f.File] = true
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d flow(s) in %d file(s)\n", len(fl), len(files))
			return nil
		},
	}
}
