package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/machines"
)

func stateCmd(g *globals) *cobra.Command {
	var dbPath string
	open := func() (machines.Store, error) { return openMachines(context.Background(), g, dbPath) }
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect the entities of state.transition machines: state, version, history",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&dbPath, "db", "", "machines database: a SQLite file or a postgres:// URL (default: the --state database when it is PostgreSQL, else machines.db in the Sluice home)")

	var asJSON bool
	get := &cobra.Command{
		Use:   "get MACHINE KEY",
		Short: "Show one entity's state, version, transition history and timers",
		Example: `  sluice state get order o-1001
  sluice state get order o-1001 --json | jq .history`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			defer s.Close()
			e, err := s.Get(cmd.Context(), args[0], args[1])
			if errors.Is(err, machines.ErrNotFound) {
				return fmt.Errorf("machine %s has no entity %q", args[0], args[1])
			}
			if err != nil {
				return err
			}
			h, err := s.History(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			timers, fired, err := s.Timers(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			type timer struct {
				machines.Timer
				Fired bool `json:"fired"`
			}
			ts := make([]timer, len(timers))
			for i := range timers {
				ts[i] = timer{timers[i], fired[i]}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(struct {
					machines.Entity
					History []machines.Transition `json:"history"`
					Timers  []timer               `json:"timers,omitempty"`
				}{e, h, ts})
			}
			fmt.Fprintf(out, "%s %s: %s (version %d, %s)\n\n", safe(e.Machine), safe(e.Key), safe(e.State), e.Version, e.Updated.Local().Format(time.DateTime))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tAT\tEVENT\tFROM\tTO\tINPUT")
			for _, t := range h {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", t.Version, t.At.Local().Format(time.DateTime), safe(t.Event), safe(t.From), safe(t.To), safe(t.Input))
			}
			if err := tw.Flush(); err != nil || len(ts) == 0 {
				return err
			}
			fmt.Fprintln(out, "\nTimers:")
			tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tSTATE\tEVENT\tDUE\tSTATUS")
			for _, t := range ts {
				status := "pending"
				switch {
				case t.Fired:
					status = "fired"
				case t.Version != e.Version:
					status = "dropped (the entity moved on)"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", t.Version, t.State, t.Event, t.Due.Local().Format(time.DateTime), status)
			}
			return tw.Flush()
		},
	}
	get.Flags().BoolVar(&asJSON, "json", false, "the entity and its history as JSON")

	var in string
	var limit int
	list := &cobra.Command{
		Use:   "list MACHINE",
		Short: "List a machine's entities, optionally those in one state",
		Example: `  sluice state list order --in paid
  sluice state list order --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			defer s.Close()
			es, err := s.List(cmd.Context(), args[0], in, limit)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, e := range es {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			if len(es) == 0 {
				fmt.Fprintln(out, "no entities")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tSTATE\tVERSION\tUPDATED")
			for _, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", safe(e.Key), safe(e.State), e.Version, e.Updated.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&in, "in", "", "only entities in this state")
	list.Flags().IntVar(&limit, "limit", 100, "at most this many, by key")
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.AddCommand(get, list)
	return cmd
}
