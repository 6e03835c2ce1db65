package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/brokers"
)

// inspector opens the configured broker for `sluice tail` and `sluice
// topics`. mem:// is refused: its topics live in another process.
func inspector(cmd *cobra.Command, g *globals) (brokers.Inspector, func(), error) {
	raw := g.brokerURL()
	if u, err := url.Parse(raw); err == nil && u.Scheme == "mem" {
		return nil, nil, brokers.ErrInProcessOnly
	}
	b, err := brokers.Open(cmd.Context(), raw, nil)
	if err != nil {
		return nil, nil, err
	}
	in, ok := b.(brokers.Inspector)
	if !ok {
		b.Close()
		u, _ := url.Parse(raw)
		return nil, nil, fmt.Errorf("the %s:// broker cannot list or tail topics", u.Scheme)
	}
	return in, func() { _ = b.Close() }, nil
}

// errTailDone stops a tail after -n messages.
var errTailDone = errors.New("tail: done")

func tailCmd(g *globals) *cobra.Command {
	var fromBeginning, asJSON bool
	var count int
	cmd := &cobra.Command{
		Use:   "tail TOPIC",
		Short: "Print a topic's messages as they arrive, without consuming them as any consumer group",
		Long: `Tail prints the messages published to a topic, with their metadata, until
interrupted (or until -n messages were printed). It reads as no consumer group:
flows consuming the topic are not disturbed and nothing is acked.

By default only messages published from now on are shown; --from-beginning
starts at the oldest message the broker still holds. A topic that does not
exist yet is waited for.

How each broker is read: sqlite:// rows by offset; kafka:// a partition
consumer per partition, with no group; amqp:// a temporary exclusive queue
bound to the topic's exchange (RabbitMQ keeps no history: messages published
from now on only, and --from-beginning is refused).
mem:// topics live inside the process running the flows and cannot be
tailed from another one.

Text output is a header line per message (topic, partition and offset where
the broker has them, time, id, metadata as key=value) and the payload on the
next line. --json prints one JSON object per message:
{"topic", "partition", "offset", "time", "id", "metadata", "payload"}, the
payload embedded as JSON when it is JSON, else as a string.`,
		Example: `  sluice tail orders
  sluice tail --from-beginning -n 10 orders.dlq
  sluice tail --json thumbnails.done | jq .payload`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return fmt.Errorf("-n %d: want a count of messages, or 0 to follow until interrupted", count)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cmd.SetContext(ctx)
			in, closeFn, err := inspector(cmd, g)
			if err != nil {
				return err
			}
			defer closeFn()
			out := cmd.OutOrStdout()
			n := 0
			err = in.Tail(ctx, args[0], fromBeginning, func(r brokers.Record) error {
				var err error
				if asJSON {
					err = writeRecordJSON(out, r)
				} else {
					err = writeRecordText(out, r)
				}
				if err != nil {
					return err
				}
				if n++; count > 0 && n >= count {
					return errTailDone
				}
				return nil
			})
			if errors.Is(err, errTailDone) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&fromBeginning, "from-beginning", false, "start with the oldest message the broker holds, not with new ones")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "exit after printing this many messages (0: follow until interrupted)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per message")
	return cmd
}

func writeRecordJSON(w io.Writer, r brokers.Record) error {
	rec := struct {
		Topic     string            `json:"topic"`
		Partition int32             `json:"partition"`
		Offset    *int64            `json:"offset,omitempty"`
		Time      time.Time         `json:"time"`
		ID        string            `json:"id"`
		Metadata  map[string]string `json:"metadata"`
		Payload   any               `json:"payload"`
	}{Topic: r.Topic, Partition: r.Partition, Time: r.Time, ID: r.Message.UUID, Metadata: r.Message.Metadata}
	if rec.Metadata == nil {
		rec.Metadata = map[string]string{}
	}
	if r.Offset >= 0 {
		rec.Offset = &r.Offset
	}
	switch p := r.Message.Payload; {
	case len(p) == 0:
		rec.Payload = nil
	case json.Valid(p):
		rec.Payload = json.RawMessage(p)
	default:
		rec.Payload = string(p)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func writeRecordText(w io.Writer, r brokers.Record) error {
	var h strings.Builder
	h.WriteString(r.Topic)
	if r.Partition != 0 {
		fmt.Fprintf(&h, "/%d", r.Partition)
	}
	if r.Offset >= 0 {
		fmt.Fprintf(&h, " #%d", r.Offset)
	}
	if !r.Time.IsZero() {
		h.WriteString(" " + r.Time.UTC().Format(time.RFC3339Nano))
	}
	h.WriteString(" id=" + r.Message.UUID)
	keys := make([]string, 0, len(r.Message.Metadata))
	for k := range r.Message.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := r.Message.Metadata[k]
		if v == "" || strings.ContainsAny(v, " \t\n\"=") {
			v = strconv.Quote(v)
		}
		h.WriteString(" " + k + "=" + v)
	}
	p := r.Message.Payload
	if !json.Valid(p) && len(p) > 0 {
		p = []byte(strconv.Quote(string(p))) // not JSON: shown escaped, on one line
	}
	_, err := fmt.Fprintf(w, "%s\n%s\n", h.String(), p)
	return err
}

func topicsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "List topics with their message counts and each consumer group's lag",
		Long: `Topics lists the broker's topics: how many messages each holds (what retention
has not removed yet) and, for each consumer group (usually one per flow),
its lag: how many of them the group has not consumed yet.

sqlite:// and kafka:// report all of it. amqp:// cannot: AMQP has no way
to enumerate exchanges and queues (rabbitmqctl list_queues shows each
group's queue, <topic>.<group>, with the messages it still holds). mem://
topics live inside the process running the flows and cannot be listed from
another one.`,
		Example: `  sluice topics
  sluice topics --json | jq 'select(.groups[]?.lag > 100)'
  SLUICE_BROKER=kafka://localhost:9092 sluice topics`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if u, err := url.Parse(g.brokerURL()); err == nil && u.Scheme == "sqlite" {
				if _, err := os.Stat(brokers.URLPath(u)); errors.Is(err, os.ErrNotExist) {
					fmt.Fprintf(cmd.OutOrStdout(), "no topics: no queue at %s yet\n", brokers.URLPath(u))
					return nil
				}
			}
			in, closeFn, err := inspector(cmd, g)
			if err != nil {
				return err
			}
			defer closeFn()
			topics, err := in.Topics(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, t := range topics {
					if err := enc.Encode(t); err != nil {
						return err
					}
				}
				return nil
			}
			if len(topics) == 0 {
				fmt.Fprintln(out, "no topics")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tMESSAGES\tGROUP\tLAG")
			for _, t := range topics {
				msgs := strconv.FormatInt(t.Messages, 10)
				if t.Messages < 0 {
					msgs = "-"
				}
				if len(t.Groups) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t-\t-\n", t.Name, msgs)
				}
				for i, gr := range t.Groups {
					name := t.Name
					if i > 0 {
						name, msgs = "", ""
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", name, msgs, gr.Name, gr.Lag)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per topic")
	return cmd
}
