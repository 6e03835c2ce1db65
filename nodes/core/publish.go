// Package core holds the flow-control nodes: publish, switch, transform
// and log.
package core

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

const (
	publishTopic    = "topic"
	publishTopics   = "topics"
	publishPayload  = "payload"
	publishMetadata = "metadata"
	publishKey      = "key"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "publish",
		Summary: "Publish the payload (or a new one) to one or more topics when the run succeeds.",
		Description: "Messages are queued and published after every step has succeeded, in order, " +
			"so a failed run publishes nothing. Publishing to several topics fans the message out. " +
			"Metadata of the input is carried over, with `metadata` added on top.",
		Fields: []nodes.Field{
			{Name: publishTopic, Kind: nodes.Template, Role: nodes.RoleTopic, Doc: "Topic to publish to; may use {{ }} expressions."},
			{Name: publishTopics, Kind: nodes.StringList, Role: nodes.RoleTopic, Doc: "Several topics to publish the same message to (fan-out)."},
			{Name: publishPayload, Kind: nodes.Expr, Doc: "Expression for the message's JSON payload; the current payload when absent."},
			{Name: publishMetadata, Kind: nodes.Map, Elem: nodes.Template, Doc: "Metadata to set on the message."},
			{Name: publishKey, Kind: nodes.Template, Doc: "Partition key: messages with the same key are consumed in order (metadata partition_key)."},
		},
		Examples: []nodes.Example{
			{Title: "Announce a thumbnail", YAML: "node: publish\nwith:\n  topic: thumbnails.done\n  payload: '{\"key\": object.key, \"thumbnail\": steps.save.key}'"},
			{Title: "Fan out", YAML: "node: publish\nwith:\n  topics: [billing, warehouse]"},
		},
		New: newPublish,
	})
}

type publish struct {
	topic    *eval.Template
	topics   []string
	payload  *eval.Program
	metadata []nodes.MapEntry
	key      *eval.Template
	result   map[string]any // for static topics, built once
}

func newPublish(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	if c.Has(publishTopic) == c.Has(publishTopics) {
		return nil, c.Errorf("", "set exactly one of %q or %q", publishTopic, publishTopics)
	}
	p := &publish{
		topic: c.Template(publishTopic), topics: c.Strings(publishTopics),
		payload: c.Expr(publishPayload), metadata: c.Map(publishMetadata), key: c.Template(publishKey),
	}
	if p.topic != nil {
		if t, static := p.topic.Static(); static {
			p.topic, p.topics = nil, []string{t}
		}
	}
	if p.topic == nil {
		p.result = map[string]any{"topics": p.topics}
	}
	return p, nil
}

func (p *publish) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	topics := p.topics
	if p.topic != nil {
		t, err := p.topic.RenderContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(err)
		}
		if t == "" {
			return nodes.Permanent(fmt.Errorf("topic %q rendered empty", p.topic.Source()))
		}
		topics = []string{t}
	}
	body := env.Payload
	if p.payload != nil {
		v, err := p.payload.EvalContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(err)
		}
		body = v
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nodes.Permanent(fmt.Errorf("payload is not JSON-encodable: %w", err))
	}
	meta := maps.Clone(env.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	for _, m := range p.metadata {
		s, err := m.Value.(*eval.Template).RenderContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(err)
		}
		meta[m.Key] = s
	}
	if p.key != nil {
		k, err := p.key.RenderContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(err)
		}
		meta[brokers.MetaPartitionKey] = k
	}
	for _, t := range topics {
		env.Emit(nodes.Output{Topic: t, Payload: data, Meta: meta})
	}
	if p.result != nil {
		env.SetResult(p.result)
	} else {
		env.SetResult(map[string]any{"topics": topics})
	}
	return nil
}

var _ nodes.Node = (*publish)(nil)
