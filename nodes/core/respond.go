package core

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "respond",
		Summary: "Set the HTTP response of an HTTP-triggered run: status, headers, and the payload as JSON or the body's bytes.",
		Description: "The response is sent when the run ends; a later respond step replaces an earlier one. " +
			"Without a respond step, a successful HTTP run answers 200 with the final payload as JSON. In runs " +
			"not triggered by HTTP the step does nothing.",
		Fields: []nodes.Field{
			{Name: "status", Kind: nodes.Int, Default: 200, Min: 100, Max: 599, Doc: "HTTP status code."},
			{Name: "headers", Kind: nodes.Map, Elem: nodes.Template, Doc: "Response headers; values may use {{ }}."},
			{Name: "body", Kind: nodes.Enum, Options: []string{"payload", "body", "none"}, Default: "payload", Doc: "payload: the payload as JSON; body: the message body's bytes (an image a step made, say); none: empty."},
			{Name: "content_type", Kind: nodes.String, Doc: "Content type; application/json for the payload, the body's own type for the body."},
		},
		Examples: []nodes.Example{
			{Title: "Created", YAML: "node: respond\nwith:\n  status: 201\n  headers: {Location: \"/images/{{ payload.id }}\"}"},
			{Title: "Serve an image", YAML: "node: respond\nwith:\n  body: body\n  headers: {Cache-Control: max-age=3600}"},
		},
		New: newRespond,
	})
}

type respond struct {
	status  int
	headers []nodes.MapEntry
	body    string
	ctype   string
}

func newRespond(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	return &respond{status: c.Int("status"), headers: c.Map("headers"), body: c.String("body"), ctype: c.String("content_type")}, nil
}

func (r *respond) Process(ctx context.Context, env *nodes.Envelope) error {
	res := nodes.Response{Status: r.status, Headers: map[string]string{}, ContentType: r.ctype}
	vars := env.Vars()
	for _, h := range r.headers {
		v, err := h.Value.(*eval.Template).RenderContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(fmt.Errorf("header %s: %w", h.Key, err))
		}
		res.Headers[http.CanonicalHeaderKey(h.Key)] = v
	}
	switch r.body {
	case "payload":
		b, err := env.PayloadJSON()
		if err != nil {
			return nodes.Permanent(err)
		}
		res.Body = b
		if res.ContentType == "" {
			res.ContentType = "application/json"
		}
	case "body":
		b, err := env.Body(ctx)
		if err != nil {
			return err
		}
		res.Body = b
		if res.ContentType == "" {
			res.ContentType = env.BodyType()
		}
	}
	env.SetResponse(res)
	env.SetResult(map[string]any{"status": res.Status, "bytes": len(res.Body)})
	return nil
}

var _ nodes.Node = (*respond)(nil)
