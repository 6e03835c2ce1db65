package core

import (
	"context"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

const (
	switchCases   = "cases"
	switchDefault = "default"
	caseWhen      = "when"
	caseBranch    = "branch"
	caseTopic     = "topic"
)

var routeFields = []nodes.Field{
	{Name: caseBranch, Kind: nodes.String, Role: nodes.RoleBranch, Doc: "Run this branch of the flow (from `branches:`), then end the run."},
	{Name: caseTopic, Kind: nodes.String, Role: nodes.RoleTopic, Doc: "Publish the payload to this topic and end the run."},
}

func init() {
	nodes.Register(nodes.Spec{
		Type:    "switch",
		Summary: "Route a message by its content: the first case whose condition holds picks a branch or a topic.",
		Description: "Cases are tried in order. A case names a `branch` (a list of steps under the flow's " +
			"`branches:`), which runs and ends the run, or a `topic`, which receives the payload and ends " +
			"the run. When no case holds, `default` is taken; without a default the flow goes on with the next step.",
		Fields: []nodes.Field{
			{Name: switchCases, Kind: nodes.List, Required: true, Doc: "Conditions and where they route.",
				Fields: append([]nodes.Field{{Name: caseWhen, Kind: nodes.Condition, Required: true, Doc: "Condition over the message."}}, routeFields...)},
			{Name: switchDefault, Kind: nodes.Object, Fields: routeFields, Doc: "Where to go when no case holds."},
		},
		Examples: []nodes.Example{{Title: "Route large orders to review", YAML: "node: switch\nwith:\n  cases:\n    - when: payload.total > 1000\n      branch: review\n    - when: payload.status == \"cancelled\"\n      topic: cancellations"}},
		New:      newSwitch,
	})
}

type switchCase struct {
	when   *eval.Program
	route  nodes.Route
	result map[string]any // built once; step results are read-only
}

type switchNode struct {
	cases     []switchCase
	def       *nodes.Route
	defResult map[string]any
	noMatch   map[string]any
}

// routeOf reads a case's or the default's route; a problem is reported on c.
func routeOf(c *nodes.Config) nodes.Route {
	if c.Has(caseBranch) == c.Has(caseTopic) {
		c.Problemf("", "set exactly one of %q or %q", caseBranch, caseTopic)
	}
	return nodes.Route{Branch: c.String(caseBranch), Topic: c.String(caseTopic)}
}

func newSwitch(c *nodes.Config, _ nodes.Deps) (nodes.Node, error) {
	s := &switchNode{}
	for _, cc := range c.List(switchCases) {
		r := routeOf(cc)
		s.cases = append(s.cases, switchCase{when: cc.Expr(caseWhen), route: r,
			result: map[string]any{"case": len(s.cases), "branch": r.Branch, "topic": r.Topic}})
	}
	if len(c.List(switchCases)) == 0 {
		c.Problemf(switchCases, "needs at least one case")
	}
	if d := c.Object(switchDefault); d != nil {
		r := routeOf(d)
		s.def = &r
		s.defResult = map[string]any{"case": "default", "branch": r.Branch, "topic": r.Topic}
	}
	s.noMatch = map[string]any{"case": nil}
	if err := c.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *switchNode) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	for _, c := range s.cases {
		ok, err := c.when.BoolContext(ctx, vars)
		if err != nil {
			return nodes.ExprError(err)
		}
		if ok {
			env.SetRoute(c.route)
			env.SetResult(c.result)
			return nil
		}
	}
	if s.def != nil {
		env.SetRoute(*s.def)
		env.SetResult(s.defResult)
		return nil
	}
	env.SetResult(s.noMatch)
	return nil
}

var _ nodes.Node = (*switchNode)(nil)
