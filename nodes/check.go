package nodes

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/eval"
)

var (
	// typeName is a node type: lowercase words of letters, digits and
	// underscores, each starting with a letter, joined by dots ("publish",
	// "image.thumbnail", "state.transition").
	typeName = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)
	// fieldName is a config field: lowercase snake case.
	fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// CheckSpec reports every mistake in a spec, the way Caddy checks a module
// when it is registered: a type name of the namespaced lowercase pattern,
// a summary and a constructor; per field (nested ones included) a unique
// snake-case name, a known kind, a default of the Go type the field's
// getter returns (int for Int, float64 for Float, time.Duration for
// Duration, []string for StringList, string for the text kinds), enum
// options with the default among them, default expressions and templates
// that compile, no default on a required field, bounds only on numbers and
// a default within them; and examples whose `with:` block decodes against
// the fields. Registry.Register calls it, so a bad spec fails at init, not
// at the first getter call of a flow that uses it.
func CheckSpec(s Spec) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !typeName.MatchString(s.Type) {
		bad("invalid type name %q: use lowercase words joined by '.', such as image.thumbnail", s.Type)
	}
	if s.Summary == "" {
		bad("no summary: `sluice nodes` shows it")
	}
	if s.New == nil {
		bad("no constructor")
	}
	checkFields("", s.Fields, bad)
	for i, ex := range s.Examples {
		if err := checkExample(s, ex); err != nil {
			bad("example %d (%s): %w", i, ex.Title, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nodes: spec %q: %w", s.Type, err)
	}
	return nil
}

func checkFields(path string, fields []Field, bad func(string, ...any)) {
	seen := map[string]bool{}
	for _, f := range fields {
		name := path + f.Name
		if !fieldName.MatchString(f.Name) {
			bad("field %q: use lowercase snake case, such as max_bytes", name)
		}
		if seen[f.Name] {
			bad("field %q declared twice", name)
		}
		seen[f.Name] = true
		checkField(name, f, bad)
	}
}

func checkField(name string, f Field, bad func(string, ...any)) {
	if !knownKind(f.Kind) {
		bad("field %q: unknown kind %q", name, f.Kind)
		return
	}
	if f.Required && f.Default != nil {
		bad("field %q: required fields take no default", name)
	}
	if f.Kind == Enum {
		if len(f.Options) == 0 {
			bad("field %q: an enum needs options", name)
		}
		seen := map[string]bool{}
		for _, o := range f.Options {
			if seen[o] {
				bad("field %q: option %q listed twice", name, o)
			}
			seen[o] = true
		}
		if d, ok := f.Default.(string); ok && !seen[d] {
			bad("field %q: default %q is not one of the options", name, d)
		}
	} else if len(f.Options) > 0 {
		bad("field %q: options apply to enums only", name)
	}
	switch f.Kind {
	case Map:
		if f.Elem == "" || !knownKind(f.Elem) || f.Elem == Map || f.Elem == Object || f.Elem == List {
			bad("field %q: a map needs an element kind of a single value (string, template, expr, any...), not %q", name, f.Elem)
		}
	case Object, List:
		if len(f.Fields) == 0 {
			bad("field %q: a%s needs fields", name, map[Kind]string{Object: "n object", List: " list"}[f.Kind])
		}
		checkFields(name+".", f.Fields, bad)
	default:
		if f.Elem != "" {
			bad("field %q: an element kind applies to maps only", name)
		}
	}
	if f.Kind != Object && f.Kind != List && len(f.Fields) > 0 {
		bad("field %q: nested fields apply to objects and lists only", name)
	}
	if f.Min != 0 || f.Max != 0 {
		if f.Kind != Int && f.Kind != Float {
			bad("field %q: bounds apply to int and float fields only", name)
		} else if f.Max <= f.Min {
			bad("field %q: max %v is not above min %v", name, f.Max, f.Min)
		}
	}
	if f.Default != nil {
		checkDefault(name, f, bad)
	}
}

// checkDefault checks a default against what the field's getter returns.
func checkDefault(name string, f Field, bad func(string, ...any)) {
	d := f.Default
	wrong := func(want string) {
		bad("field %q: default %#v is %T, want %s for a %s field", name, d, d, want, f.Kind)
	}
	inRange := func(x float64) {
		if f.Max > f.Min && (x < f.Min || x > f.Max) {
			bad("field %q: default %v is out of range [%v, %v]", name, x, f.Min, f.Max)
		}
	}
	switch f.Kind {
	case String, Enum:
		if _, ok := d.(string); !ok {
			wrong("a string")
		}
	case Template:
		s, ok := d.(string)
		if !ok {
			wrong("the template's source (a string)")
		} else if _, err := eval.ParseTemplate(s); err != nil {
			bad("field %q: default template %q does not compile: %v", name, s, err)
		}
	case Expr, Condition:
		s, ok := d.(string)
		if !ok {
			wrong("the expression's source (a string)")
		} else if _, err := eval.Compile(s, f.Kind == Condition); err != nil {
			bad("field %q: default expression %q does not compile: %v", name, s, err)
		}
	case Int:
		if i, ok := d.(int); !ok {
			wrong("an int")
		} else {
			inRange(float64(i))
		}
	case Float:
		if x, ok := d.(float64); !ok {
			wrong("a float64")
		} else {
			inRange(x)
		}
	case Bool:
		if _, ok := d.(bool); !ok {
			wrong("a bool")
		}
	case Duration:
		if x, ok := d.(time.Duration); !ok {
			wrong("a time.Duration")
		} else if x < 0 {
			bad("field %q: default %v is negative", name, x)
		}
	case StringList:
		if _, ok := d.([]string); !ok {
			wrong("a []string")
		}
	case Map, Object, List:
		bad("field %q: a %s field takes no default", name, f.Kind)
	case Any:
		// Any JSON-like value.
	}
}

func knownKind(k Kind) bool {
	switch k {
	case String, Int, Float, Bool, Duration, Enum, Expr, Condition, Template, StringList, Map, Object, List, Any:
		return true
	}
	return false
}

// checkExample decodes an example step: its node, when given, is the
// spec's type, and its with: block decodes against the fields.
func checkExample(s Spec, ex Example) error {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(ex.YAML), &doc); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return errors.New("want a step: a mapping with node and with")
	}
	var with *yaml.Node
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch k, v := m.Content[i].Value, m.Content[i+1]; k {
		case "node", "type":
			if v.Value != s.Type {
				return fmt.Errorf("%s %q is not %q", k, v.Value, s.Type)
			}
		case "with":
			with = v
		}
	}
	_, probs := Decode("example", "", s.Fields, with, Pos{File: "example"})
	return probs.Err()
}
