package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
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
	var raw, ndjson bool
	var idField, keyField string
	cmd := &cobra.Command{
		Use:   "publish TOPIC [PAYLOAD | @FILE | -]",
		Short: "Publish a message to a topic (payload as an argument, from a file, or from stdin)",
		Long: `Publish sends one message to a topic of the configured broker. The payload is
the argument, the content of @FILE, or standard input ("-" or no argument).
It must be JSON unless --raw is given. The message id is printed.

Topic names are 1 to 200 letters, digits and - $ : . _. A payload may be
up to the broker's max_message_bytes, 10 MiB unless the broker URL says
otherwise (e.g. sqlite://.sluice/queue.db?max_message_bytes=1048576), and
metadata up to 1 MiB.

With --ndjson each line of the payload (a file or standard input, any
size) is a message, published in batches with a progress bar; --id-field
and --key-field take each message's id and partition key (entity order on
Kafka) from a field of its JSON. A bad line stops the run and names its
line number; lines before it are published.`,
		Example: `  sluice publish orders '{"id":"o-1","status":"paid"}'
  sluice publish orders @order.json
  echo '{"id":"o-2"}' | sluice publish orders
  sluice publish --meta source=cli --meta tenant=acme orders '{"id":"o-3"}'
  sluice publish --ndjson --key-field order_id orders @events.ndjson
  zcat logs.ndjson.gz | sluice publish --ndjson logs -`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := brokers.ValidateTopic(args[0]); err != nil {
				return err
			}
			if ndjson {
				return publishNDJSON(cmd, g, args, meta, idField, keyField)
			}
			if idField != "" || keyField != "" {
				return fmt.Errorf("--id-field and --key-field go with --ndjson")
			}
			limit, err := messageLimit(g.brokerURL())
			if err != nil {
				return err
			}
			var payload []byte
			switch {
			case len(args) == 1 || args[1] == "-":
				payload, err = readWithin(cmd.InOrStdin(), "standard input", limit)
			case strings.HasPrefix(args[1], "@"):
				var f *os.File
				if f, err = os.Open(args[1][1:]); err == nil {
					payload, err = readWithin(f, args[1][1:], limit)
					f.Close()
				}
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
	cmd.Flags().BoolVar(&ndjson, "ndjson", false, "one message per line of newline-delimited JSON")
	cmd.Flags().StringVar(&idField, "id-field", "", "with --ndjson: take message ids from this field")
	cmd.Flags().StringVar(&keyField, "key-field", "", "with --ndjson: take partition keys from this field")
	return cmd
}

// publishNDJSON publishes each line of the input as a message, in batches
// of up to 500 per Publish (one commit each on the embedded queue).
func publishNDJSON(cmd *cobra.Command, g *globals, args, meta []string, idField, keyField string) error {
	var in io.Reader = cmd.InOrStdin()
	var total int64 = -1
	if len(args) == 2 && args[1] != "-" {
		path := strings.TrimPrefix(args[1], "@")
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			total = fi.Size()
		}
		in = f
	}
	md := message.Metadata{}
	for _, kv := range meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--meta %q: want key=value", kv)
		}
		md.Set(k, v)
	}
	b, err := brokers.Open(cmd.Context(), g.brokerURL(), nil)
	if err != nil {
		return err
	}
	defer b.Close()
	bar := newBar(total, "publishing to "+args[0], true)
	sc := bufio.NewScanner(io.TeeReader(in, bar))
	limit, err := messageLimit(g.brokerURL())
	if err != nil {
		return err
	}
	sc.Buffer(make([]byte, 64<<10), int(limit)+1) // a longer line is over the broker's limit anyway
	batch := make([]*message.Message, 0, 500)
	n, line := 0, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := b.Publisher().Publish(args[0], batch...); err != nil {
			return fmt.Errorf("after %d messages: %w", n, err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(text, &fields); err != nil {
			_ = flush()
			return fmt.Errorf("line %d: not a JSON object (%v); %d messages published before it", line, err, n)
		}
		id := watermill.NewUUID()
		if idField != "" {
			if v, ok := fields[idField]; ok && v != nil {
				id = fmt.Sprint(v)
			} else {
				_ = flush()
				return fmt.Errorf("line %d: no %q field for the message id; %d messages published before it", line, idField, n)
			}
		}
		msg := message.NewMessage(id, append([]byte(nil), text...))
		for k, v := range md {
			msg.Metadata.Set(k, v)
		}
		if keyField != "" {
			if v, ok := fields[keyField]; ok && v != nil {
				msg.Metadata.Set(brokers.MetaPartitionKey, fmt.Sprint(v))
			}
		}
		batch = append(batch, msg)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	if err := flush(); err != nil {
		return err
	}
	_ = bar.Finish()
	fmt.Fprintf(cmd.OutOrStdout(), "published %d messages to %s\n", n, args[0])
	return nil
}

// messageLimit is the broker's largest message (max_message_bytes).
func messageLimit(brokerURL string) (int64, error) {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return 0, fmt.Errorf("broker url: %w", err)
	}
	return brokers.ParseMaxMessageBytes(u.Query())
}

// readWithin reads r whole if it holds at most limit bytes, counting as it
// reads: a larger input is refused without being held in memory.
func readWithin(r io.Reader, what string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over the broker's message limit of %d bytes (max_message_bytes); publish a large array line by line with --ndjson, or put files in a bucket", what, limit)
	}
	return b, nil
}
