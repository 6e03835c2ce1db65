package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
)

func nodesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "nodes [TYPE...]",
		Short:   "Document the node types: all of them, or the named ones in full",
		Example: "  sluice nodes\n  sluice nodes image.thumbnail switch",
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			reg := registry()
			if len(args) == 0 {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				for _, s := range reg.Specs() {
					fmt.Fprintf(tw, "%s\t%s\n", s.Type, s.Summary)
				}
				tw.Flush()
				fmt.Fprintln(out, "\nRun 'sluice nodes TYPE' for a type's fields and examples.")
				return nil
			}
			for i, t := range args {
				s, ok := reg.Lookup(t)
				if !ok {
					return fmt.Errorf("unknown node type %q%s", t, nodes.Suggest(t, reg.Types()))
				}
				if i > 0 {
					fmt.Fprintln(out)
				}
				printSpec(out, s)
			}
			return nil
		},
	}
}

func printSpec(out io.Writer, s *nodes.Spec) {
	fmt.Fprintf(out, "%s\n  %s\n", s.Type, s.Summary)
	if s.Description != "" {
		fmt.Fprintf(out, "\n  %s\n", s.Description)
	}
	if len(s.Fields) > 0 {
		fmt.Fprintln(out, "\nFields (under with:):")
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		printFields(tw, s.Fields, "  ")
		tw.Flush()
	}
	for _, ex := range s.Examples {
		fmt.Fprintf(out, "\nExample: %s\n", ex.Title)
		for _, line := range strings.Split("- "+strings.ReplaceAll(ex.YAML, "\n", "\n  "), "\n") {
			fmt.Fprintln(out, "  "+line)
		}
	}
}

func printFields(tw io.Writer, fields []nodes.Field, indent string) {
	for _, f := range fields {
		kind := string(f.Kind)
		if f.Kind == nodes.Enum {
			kind = strings.Join(f.Options, "|")
		}
		if f.Kind == nodes.Map {
			kind = "map of " + string(f.Elem)
		}
		var notes []string
		if f.Required {
			notes = append(notes, "required")
		}
		if f.Default != nil {
			notes = append(notes, fmt.Sprintf("default %v", f.Default))
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", indent, f.Name, kind, strings.Join(notes, ", "), f.Doc)
		if len(f.Fields) > 0 {
			printFields(tw, f.Fields, indent+"  ")
		}
	}
}

func schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of flow files, for editors and CI",
		Long: `Schema prints a JSON Schema for flow files, generated from the node specs the
linter uses. With the YAML language server, start a flow file with:
  # yaml-language-server: $schema=./sluice.schema.json`,
		Example: "  sluice schema > sluice.schema.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(flows.JSONSchema(registry()))
		},
	}
}
