package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/brokers"
)

func publishCmd(g *globals) *cobra.Command {
	var meta []string
	var id string
	var raw bool
	cmd := &cobra.Command{
		Use:   "publish TOPIC [PAYLOAD | @FILE | -]",
		Short: "Publish a message to a topic (payload as an argument, from a file, or from stdin)",
		Long: `Publish sends one message to a topic of the configured broker. The payload is
the argument, the content of @FILE, or standard input ("-" or no argument).
It must be JSON unless --raw is given. The message id is printed.`,
		Example: `  sluice publish orders '{"id":"o-1","status":"paid"}'
  sluice publish orders @order.json
  echo '{"id":"o-2"}' | sluice publish orders
  sluice publish --meta source=cli --meta tenant=acme orders '{"id":"o-3"}'`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var payload []byte
			var err error
			switch {
			case len(args) == 1 || args[1] == "-":
				payload, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<20))
			case strings.HasPrefix(args[1], "@"):
				payload, err = os.ReadFile(args[1][1:])
			default:
				payload = []byte(args[1])
			}
			if err != nil {
				return err
			}
			if !raw && !json.Valid(payload) {
				return fmt.Errorf("payload is not valid JSON (use --raw to send it as it is)")
			}
			if id == "" {
				id = watermill.NewUUID()
			}
			msg := message.NewMessage(id, payload)
			for _, kv := range meta {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--meta %q: want key=value", kv)
				}
				msg.Metadata.Set(k, v)
			}
			b, err := brokers.Open(cmd.Context(), g.brokerURL(), nil)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := b.Publisher().Publish(args[0], msg); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg.UUID)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&meta, "meta", nil, "metadata key=value (repeatable)")
	cmd.Flags().StringVar(&id, "id", "", "message id; a new UUID by default")
	cmd.Flags().BoolVar(&raw, "raw", false, "send a payload that is not JSON")
	return cmd
}
