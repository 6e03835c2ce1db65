package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/state"
)

func runsCmd(g *globals) *cobra.Command {
	var f state.Filter
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List recorded runs: flow, status, duration, failing step and error",
		Example: `  sluice runs
  sluice runs --flow thumbnails --status dead_lettered --since 1h
  sluice runs --json | jq .`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch f.Status {
			case "", state.StatusSucceeded, state.StatusFailed, state.StatusDeadLettered, state.StatusDuplicate:
			default:
				return fmt.Errorf("--status must be succeeded, failed, dead_lettered or duplicate, not %q", f.Status)
			}
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			st, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			runs, err := st.Runs(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, r := range runs {
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
				return nil
			}
			if len(runs) == 0 {
				fmt.Fprintln(out, "no runs")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STARTED\tFLOW\tSTATUS\tDURATION\tINPUT\tSTEP\tERROR")
			for _, r := range runs {
				errText := clip(strings.ReplaceAll(r.Error, "\n", " "), 100)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Started.Local().Format("2006-01-02 15:04:05"), safe(r.Flow), r.Status,
					r.Duration.Round(time.Microsecond*100), safe(r.Input), safe(r.Step), errText)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&f.Flow, "flow", "", "only this flow")
	cmd.Flags().StringVar(&f.Status, "status", "", "only this status: succeeded, failed, dead_lettered, duplicate")
	cmd.Flags().StringVar(&f.Input, "input", "", "only runs of this input (message id, or bucket/key@etag)")
	cmd.Flags().DurationVar(&since, "since", 0, "only runs started within this long, e.g. 1h")
	cmd.Flags().IntVar(&f.Limit, "limit", 50, "at most this many runs, newest first")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.AddCommand(runShowCmd(g))
	return cmd
}

func runShowCmd(g *globals) *cobra.Command {
	var asJSON, tree bool
	cmd := &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show one run: its input, status, trace id, parent run and the timeline of its steps",
		Long: `Show one run: its input, status, trace id, the run that made its input
(parent) and the timeline of its steps.

With --tree, show its lineage instead: the chain of runs back to the
source (the run whose input came from outside, such as an uploaded file)
and every run its outputs fed, as a tree; the run asked for is marked *.`,
		Example: `  sluice runs show 01M8A4ASYRGJ4C2XHFVMKB203F
  sluice runs show 01M8A4ASYRGJ4C2XHFVMKB203F --json | jq .trace_id
  sluice runs show 01M8A4ASYRGJ4C2XHFVMKB203F --tree`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := oneRun(cmd.Context(), st, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if tree {
				root, err := st.Lineage(cmd.Context(), r.ID)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(out).Encode(root)
				}
				printTree(out, root, "", "")
				return nil
			}
			if asJSON {
				return json.NewEncoder(out).Encode(r)
			}
			fmt.Fprintf(out, "run       %s\nflow      %s\ntrigger   %s\ninput     %s\nstatus    %s\nstarted   %s\nduration  %s\n",
				safe(r.ID), safe(r.Flow), safe(r.Trigger), safe(r.Input), r.Status, r.Started.Local().Format(time.RFC3339Nano), r.Duration)
			if r.TraceID != "" {
				fmt.Fprintf(out, "trace     %s\n", safe(r.TraceID))
			}
			if r.Parent != "" {
				fmt.Fprintf(out, "parent    %s\n", safe(r.Parent))
			}
			if r.Error != "" {
				fmt.Fprintf(out, "failed at %s after %d attempt(s): %s\n", safe(r.Step), r.Attempts, safeLines(r.Error))
			}
			fmt.Fprintln(out)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STEP\tNODE\tSTATUS\tATTEMPTS\tDURATION\tERROR\tOUTPUT")
			for _, s := range r.Steps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", safe(s.ID), s.Node, s.Status, s.Attempts, s.Duration.Round(time.Microsecond), safe(s.Error), safe(s.Output))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// Metered calls (functions, models) and what a node kept about
			// its last attempt (a function's stderr tail).
			for _, s := range r.Steps {
				for _, c := range s.Calls {
					cold := ""
					if c.ColdStart {
						cold = ", cold start"
					}
					fail := ""
					if c.Error != "" {
						fail = ": " + safe(c.Error)
					}
					fmt.Fprintf(out, "\ncall  %s: %s %s, %s%s%s", safe(s.ID), c.Kind, safe(c.Name), c.Duration.Round(time.Microsecond), cold, fail)
				}
				for _, o := range s.Wrote {
					fmt.Fprintf(out, "\nwrote %s: %s", safe(s.ID), safe(o))
				}
				for _, t := range s.Published {
					fmt.Fprintf(out, "\npublished %s: a message to %s", safe(s.ID), safe(t))
				}
				if s.Log != "" {
					fmt.Fprintf(out, "\n\nlog of step %s:\n%s", safe(s.ID), safeLines(s.Log))
				}
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the run (with --tree: the tree) as JSON")
	cmd.Flags().BoolVar(&tree, "tree", false, "show the run's lineage: its chain back to the source and every run it fed")
	return cmd
}
