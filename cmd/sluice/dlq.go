package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/state"
)

func dlqCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Dead letters: list, show, replay and purge the inputs flows gave up on",
		Long: `A run that fails for good (a permanent error, or retries used up) sends its
input, unchanged, to the flow's dead-letter topic, and records it here with
the flow, step, node, error and attempts. Replay publishes dead letters again
to the topic their flow was triggered from (after you fixed the flow or the
data); each replayed message carries sluice_replay_of=<dead letter id>.`,
		Example: `  sluice dlq list --flow thumbnails
  sluice dlq show 3f1c...
  sluice dlq replay --flow orders --error "invalid operation"
  sluice dlq purge --flow orders --since 24h`,
	}
	var f state.DeadLetterFilter
	var since time.Duration
	addFilter := func(c *cobra.Command, replayedToo bool) {
		c.Flags().StringVar(&f.Flow, "flow", "", "only this flow")
		c.Flags().StringVar(&f.Step, "step", "", "only this step")
		c.Flags().StringVar(&f.Error, "error", "", "only errors containing this text")
		c.Flags().DurationVar(&since, "since", 0, "only dead letters from within this long, e.g. 24h")
		if replayedToo {
			c.Flags().BoolVar(&f.Replayed, "replayed", false, "include dead letters already replayed")
		}
	}
	open := func(ids []string) (*state.DB, error) {
		f.IDs = ids
		if since > 0 {
			f.Since = time.Now().Add(-since)
		}
		return g.openState(context.Background())
	}

	var all bool
	// openSelected is open for commands that act on dead letters: they must
	// be named or filtered, or --all given, so a bare command does nothing.
	openSelected := func(ids []string) (*state.DB, error) {
		if len(ids) == 0 && !all && f.Flow == "" && f.Step == "" && f.Error == "" && since == 0 {
			return nil, errors.New("name dead letters by id, select them with --flow/--step/--error/--since, or give --all")
		}
		return open(ids)
	}

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters (pending ones; --replayed for all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := open(nil)
			if err != nil {
				return err
			}
			defer st.Close()
			dls, err := st.DeadLetters(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, dl := range dls {
					if err := enc.Encode(dl); err != nil {
						return err
					}
				}
				return nil
			}
			if len(dls) == 0 {
				fmt.Fprintln(out, "no dead letters")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFAILED\tFLOW\tSTEP\tATTEMPTS\tERROR")
			for _, dl := range dls {
				e := clip(strings.ReplaceAll(dl.Error, "\n", " "), 90)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", safe(dl.ID), dl.Failed.Local().Format("2006-01-02 15:04:05"), safe(dl.Flow), safe(dl.Step), dl.Attempts, e)
			}
			return tw.Flush()
		},
	}
	addFilter(list, true)
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a dead letter in full: reason, metadata and payload",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(args)
			if err != nil {
				return err
			}
			defer st.Close()
			f.Replayed = true
			dls, err := st.DeadLetters(cmd.Context(), f)
			if err != nil {
				return err
			}
			if len(dls) == 0 {
				return fmt.Errorf("no dead letter %q (see 'sluice dlq list --replayed')", args[0])
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			type shown struct {
				state.DeadLetter
				Payload json.RawMessage `json:"payload"`
			}
			s := shown{DeadLetter: dls[0], Payload: json.RawMessage(dls[0].Payload)}
			if !json.Valid(dls[0].Payload) {
				text, _ := json.Marshal(string(dls[0].Payload))
				s.Payload = text
			}
			return enc.Encode(s)
		},
	}

	var to string
	replay := &cobra.Command{
		Use:   "replay [ID...]",
		Short: "Publish dead letters again to their flow's trigger topic (by id, by filter, or --all)",
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openSelected(args)
			if err != nil {
				return err
			}
			defer st.Close()
			b, err := brokers.Open(cmd.Context(), g.brokerURL(), nil)
			if err != nil {
				return err
			}
			defer b.Close()
			var bar *progressbar.ProgressBar
			n, err := flows.ReplayDeadLetters(cmd.Context(), b.Publisher(), st, f, to, func(done, total int) {
				if bar == nil {
					bar = newBar(int64(total), "replaying", false)
				}
				_ = bar.Set(done)
			})
			if bar != nil {
				_ = bar.Finish()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replayed %d dead letter(s)\n", n)
			return err
		},
	}
	addFilter(replay, true)
	replay.Flags().StringVar(&to, "to", "", "publish to this topic instead of the flow's trigger topic")
	replay.Flags().BoolVar(&all, "all", false, "replay every pending dead letter")

	purge := &cobra.Command{
		Use:   "purge [ID...]",
		Short: "Delete dead letters from the state database (by id, by filter, or --all)",
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openSelected(args)
			if err != nil {
				return err
			}
			defer st.Close()
			f.Replayed = true
			n, err := st.PurgeDeadLetters(cmd.Context(), f)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "purged %d dead letter(s)\n", n)
			return nil
		},
	}
	addFilter(purge, false)
	purge.Flags().BoolVar(&all, "all", false, "delete every dead letter")

	cmd.AddCommand(list, show, replay, purge)
	return cmd
}
