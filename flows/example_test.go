package flows_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// shout is a custom node type: it upper-cases a payload field.
type shout struct{ field string }

func (s shout) Process(_ context.Context, env *nodes.Envelope) error {
	p, ok := env.Payload.(map[string]any)
	if !ok {
		return nodes.Permanent(fmt.Errorf("payload is not an object"))
	}
	text, _ := p[s.field].(string)
	p[s.field] = strings.ToUpper(text)
	return nil
}

// ExampleEngine embeds Sluice in a Go program: it registers a node type of
// its own in an isolated registry, loads a flow using it, and runs the
// engine on the in-memory broker and storage.
func ExampleEngine() {
	reg := nodes.Global().Clone() // the built-in nodes, plus ours
	if err := reg.Register(nodes.Spec{
		Type:    "text.shout",
		Summary: "Upper-case a field of the payload.",
		Fields:  []nodes.Field{{Name: "field", Kind: nodes.String, Default: "text", Doc: "Field to change."}},
		New: func(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
			return shout{field: c.String("field")}, nil
		},
	}); err != nil {
		panic(err)
	}

	dir, _ := os.MkdirTemp("", "sluice-example-")
	defer os.RemoveAll(dir)
	flowFile := filepath.Join(dir, "greet.yaml")
	_ = os.WriteFile(flowFile, []byte(`
name: greet
on: {topic: greetings}
steps:
  - node: text.shout
  - node: publish
    with: {topic: shouted}
`), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	broker, _ := brokers.Open(ctx, "mem://", nil)
	defer broker.Close()
	store := storage.NewStore(storage.NewMem())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	fl, err := flows.Loader{Registry: reg, Deps: nodes.Deps{Store: store, Logger: logger}}.Load(flowFile)
	if err != nil {
		panic(err)
	}
	engine, err := flows.NewEngine(flows.Options{Broker: broker, Store: store, Logger: logger}, fl)
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- engine.Run(ctx) }()
	<-engine.Ready()

	sub, _ := broker.Subscriber("reader")
	shouted, _ := sub.Subscribe(ctx, "shouted")
	_ = broker.Publisher().Publish("greetings", message.NewMessage("m-1", []byte(`{"text":"hello"}`)))

	out := <-shouted
	out.Ack()
	fmt.Println(string(out.Payload))
	cancel()
	<-done
	// Output: {"text":"HELLO"}
}
