package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/state"
)

func usageCmd(g *globals) *cobra.Command {
	var f state.UsageFilter
	var days int
	var asJSON, calls bool
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Sum calls, errors, compute time and bytes per flow and per day, like a serverless bill",
		Long: `Sums the run ledger per flow and per UTC day: calls (runs; redelivered
duplicates are counted apart and not billed), errors (failed and
dead-lettered runs), compute seconds (run durations) and bytes read and
written. Runs older than the ledger's retention (sluice run --retention)
are gone from it.`,
		Example: `  sluice usage
  sluice usage --flow thumbnails --days 7
  sluice usage --json | jq .
  sluice usage --calls            # per function and model: calls, cold starts, seconds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days > 0 {
				y, m, d := time.Now().UTC().AddDate(0, 0, -(days - 1)).Date()
				f.Since = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
			}
			st, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			out := cmd.OutOrStdout()
			if calls {
				return printCallUsage(cmd, st, f, asJSON)
			}
			rows, err := st.Usage(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				return jsonLines(out, rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(out, "no runs")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "DAY\tFLOW\tCALLS\tERRORS\tDUPLICATES\tCOMPUTE-S\tIN\tOUT\t")
			var total state.Usage
			for _, u := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.3f\t%s\t%s\t\n", u.Day, u.Flow, u.Calls, u.Errors, u.Duplicates, u.ComputeSeconds, bytesText(u.BytesIn), bytesText(u.BytesOut))
				total.Calls += u.Calls
				total.Errors += u.Errors
				total.Duplicates += u.Duplicates
				total.ComputeSeconds += u.ComputeSeconds
				total.BytesIn += u.BytesIn
				total.BytesOut += u.BytesOut
			}
			fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%.3f\t%s\t%s\t\n", total.Calls, total.Errors, total.Duplicates, total.ComputeSeconds, bytesText(total.BytesIn), bytesText(total.BytesOut))
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&f.Flow, "flow", "", "only this flow")
	cmd.Flags().IntVar(&days, "days", 30, "the last N days, today included (0: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per flow and day")
	cmd.Flags().BoolVar(&calls, "calls", false, "sum the metered calls instead: functions and models, per flow, kind and name (calls, errors, cold starts, seconds)")
	return cmd
}

// bytesText prints a byte count in binary units (1.5 MiB).
func bytesText(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// printCallUsage prints the metered calls per day, flow, kind and name.
func printCallUsage(cmd *cobra.Command, st *state.DB, f state.UsageFilter, asJSON bool) error {
	rows, err := st.CallUsage(cmd.Context(), f)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return jsonLines(out, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "no metered calls")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DAY\tFLOW\tKIND\tNAME\tCALLS\tERRORS\tCOLD\tSECONDS\tIN\t")
	for _, u := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.3f\t%s\t\n", u.Day, u.Flow, u.Kind, escape(u.Name, false), u.Calls, u.Errors, u.ColdStarts, u.Seconds, bytesText(u.BytesIn))
	}
	return tw.Flush()
}

// jsonLines writes one JSON object per line.
func jsonLines[T any](w io.Writer, rows []T) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}
