package flows

import (
	"github.com/sluicehq/sluice/nodes"
)

// JSONSchema returns a JSON Schema (draft 2020-12) for flow files, with
// each step's `with:` block checked against its node type's spec, for
// editors (yaml-language-server) and CI linters. It is generated from the
// same specs the linter uses.
func JSONSchema(reg *nodes.Registry) map[string]any {
	if reg == nil {
		reg = nodes.Global()
	}
	types := reg.Types()
	stepBase := objectSchema(stepFields)
	props := stepBase["properties"].(map[string]any)
	props["node"] = map[string]any{"type": "string", "enum": types, "description": "Node type; see `sluice nodes`."}
	var conds []any
	for _, s := range reg.Specs() {
		with := objectSchema(s.Fields)
		with["description"] = s.Summary
		conds = append(conds, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"node": map[string]any{"const": s.Type}}, "required": []string{"node"}},
			"then": map[string]any{"properties": map[string]any{"with": with}},
		})
	}
	step := map[string]any{"allOf": append([]any{stepBase}, conds...)}
	steps := map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"$ref": "#/$defs/step"}}

	root := objectSchema(flowFields)
	rp := root["properties"].(map[string]any)
	on := objectSchema(triggerFields)
	on["description"] = "The trigger: one of topic, bucket, http, schedule, with its fields."
	rp["on"] = on
	rp["steps"] = steps
	rp["branches"] = map[string]any{"type": "object", "additionalProperties": steps, "description": "Named lists of steps a switch can route to."}
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = "Sluice flow"
	root["$defs"] = map[string]any{"step": step}
	return root
}

func objectSchema(fields []nodes.Field) map[string]any {
	props := map[string]any{}
	var required []string
	for _, f := range fields {
		props[f.Name] = fieldSchema(f)
		if f.Required {
			required = append(required, f.Name)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func fieldSchema(f nodes.Field) map[string]any {
	var s map[string]any
	switch f.Kind {
	case nodes.String, nodes.Template, nodes.Expr, nodes.Condition:
		s = map[string]any{"type": "string"}
	case nodes.Duration:
		s = map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case nodes.Enum:
		s = map[string]any{"type": "string", "enum": f.Options}
	case nodes.Int, nodes.Float:
		t := "integer"
		if f.Kind == nodes.Float {
			t = "number"
		}
		s = map[string]any{"type": t}
		if f.Max > f.Min {
			s["minimum"], s["maximum"] = f.Min, f.Max
		}
	case nodes.Bool:
		s = map[string]any{"type": "boolean"}
	case nodes.StringList:
		s = map[string]any{"oneOf": []any{
			map[string]any{"type": "string"},
			map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		}}
	case nodes.Map:
		s = map[string]any{"type": "object", "additionalProperties": fieldSchema(nodes.Field{Kind: f.Elem})}
	case nodes.Object:
		s = objectSchema(f.Fields)
	case nodes.List:
		s = map[string]any{"type": "array", "items": objectSchema(f.Fields)}
	default:
		s = map[string]any{}
	}
	if f.Doc != "" {
		s["description"] = f.Doc
	}
	if f.Default != nil {
		switch d := f.Default.(type) {
		case interface{ String() string }:
			s["default"] = d.String()
		default:
			s["default"] = d
		}
	}
	return s
}
