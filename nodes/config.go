package nodes

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lithammer/fuzzysearch/fuzzy"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/eval"
)

// Config is a node's `with:` block decoded against its spec's fields:
// every value typed, every expression and template compiled, defaults
// applied, and each value's position kept for error messages.
//
// Getters return the field's value, or its default when absent; asking for
// a field the spec does not declare, or with the wrong getter, panics
// (a bug in the node, not in the flow).
//
// Constructors report what they find wrong with Problemf (or ProblemAt),
// every problem rather than the first, and end with
//
//	if err := c.Err(); err != nil {
//		return nil, err
//	}
//
// Nested configs (Object, List) share their parent's problems, so a
// constructor's helpers may report on the config they were given.
type Config struct {
	file   string
	where  string // "steps[2] (image.thumbnail)", prefixed to messages
	fields map[string]Field
	vals   map[string]any
	pos    map[string]Pos
	self   Pos
	refs   []Ref
	probs  *Problems // reported by the constructor; shared with nested configs
}

// Ref is a value whose field has a Role, for cross-checks by the linter.
// Value is empty when it is a template with expressions.
type Ref struct {
	Role  Role
	Value string
	Pos   Pos
}

// MapEntry is one entry of a Map field, in file order.
type MapEntry struct {
	Key   string
	Value any // by Field.Elem: string, *eval.Program, *eval.Template, or any
	Pos   Pos
}

// Decode decodes n (a mapping, or nil for an empty one) against fields.
// where prefixes messages, e.g. `steps[2] (image.thumbnail)`. All problems
// are returned, not only the first.
func Decode(file, where string, fields []Field, n *yaml.Node, self Pos) (*Config, Problems) {
	c := &Config{file: file, where: where, fields: map[string]Field{}, vals: map[string]any{}, pos: map[string]Pos{}, self: self, probs: new(Problems)}
	for _, f := range fields {
		c.fields[f.Name] = f
	}
	var probs Problems
	c.decode(fields, n, &probs)
	return c, probs
}

func (c *Config) prefix() string {
	if c.where == "" {
		return ""
	}
	return c.where + ": "
}

func (c *Config) problem(probs *Problems, pos Pos, format string, args ...any) {
	probs.Add(pos, c.prefix()+format, args...)
}

func (c *Config) decode(fields []Field, n *yaml.Node, probs *Problems) {
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		if n.Kind != yaml.MappingNode {
			c.problem(probs, PosOf(c.file, n), "want a mapping of fields, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := c.fields[k.Value]
			if !ok {
				c.problem(probs, PosOf(c.file, k), "unknown field %q%s", k.Value, suggest(k.Value, fieldNames(fields)))
				continue
			}
			if _, dup := c.pos[k.Value]; dup {
				c.problem(probs, PosOf(c.file, k), "field %q given twice", k.Value)
				continue
			}
			c.pos[k.Value] = valuePos(c.file, v)
			if val, ok := c.value(f, k.Value, v, probs); ok {
				c.vals[k.Value] = val
			}
		}
	}
	for _, f := range fields {
		if _, set := c.pos[f.Name]; !set && f.Required {
			c.problem(probs, c.self, "missing required field %q", f.Name)
		}
	}
}

func (c *Config) value(f Field, name string, v *yaml.Node, probs *Problems) (any, bool) {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	pos := valuePos(c.file, v)
	bad := func(want string) (any, bool) {
		c.problem(probs, pos, "field %q: want %s, got %s", name, want, describe(v))
		return nil, false
	}
	scalar := v.Kind == yaml.ScalarNode && v.Tag != "!!null"
	switch f.Kind {
	case String, Template, Enum, Expr, Condition, Duration:
		if !scalar {
			return bad(string(f.Kind))
		}
	}
	switch f.Kind {
	case String:
		c.ref(f, v.Value, pos)
		return v.Value, true
	case Template:
		t, err := eval.ParseTemplate(v.Value)
		if err != nil {
			c.exprProblem(probs, name, v, err)
			return nil, false
		}
		if s, static := t.Static(); static {
			c.ref(f, s, pos)
		} else {
			c.ref(f, "", pos)
		}
		return t, true
	case Expr, Condition:
		p, err := eval.Compile(v.Value, f.Kind == Condition)
		if err != nil {
			c.exprProblem(probs, name, v, err)
			return nil, false
		}
		return p, true
	case Enum:
		for _, o := range f.Options {
			if v.Value == o {
				return o, true
			}
		}
		c.problem(probs, pos, "field %q: %q is not one of %s%s", name, v.Value, strings.Join(f.Options, ", "), suggest(v.Value, f.Options))
		return nil, false
	case Duration:
		d, err := time.ParseDuration(v.Value)
		if err != nil || d < 0 {
			return bad(`a duration such as "500ms" or "1m30s"`)
		}
		return d, true
	case Int:
		if v.Tag != "!!int" {
			return bad("an integer")
		}
		i, err := strconv.ParseInt(v.Value, 0, 64)
		if err != nil {
			return bad("an integer")
		}
		if !c.inRange(f, name, float64(i), pos, probs) {
			return nil, false
		}
		return int(i), true
	case Float:
		if v.Tag != "!!int" && v.Tag != "!!float" {
			return bad("a number")
		}
		x, err := strconv.ParseFloat(v.Value, 64)
		if err != nil || math.IsNaN(x) {
			return bad("a number")
		}
		if !c.inRange(f, name, x, pos, probs) {
			return nil, false
		}
		return x, true
	case Bool:
		if v.Tag != "!!bool" {
			return bad("true or false")
		}
		b, _ := strconv.ParseBool(v.Value)
		return b, true
	case StringList:
		if scalar {
			c.ref(f, v.Value, pos)
			return []string{v.Value}, true
		}
		if v.Kind != yaml.SequenceNode {
			return bad("a list of strings")
		}
		out := make([]string, 0, len(v.Content))
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
				c.problem(probs, valuePos(c.file, it), "field %q: want a string, got %s", name, describe(it))
				continue
			}
			c.ref(f, it.Value, valuePos(c.file, it))
			out = append(out, it.Value)
		}
		return out, true
	case Map:
		if v.Kind != yaml.MappingNode {
			return bad("a mapping")
		}
		var out []MapEntry
		ok := true
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, val := v.Content[i], v.Content[i+1]
			sub := Field{Name: name + "." + k.Value, Kind: f.Elem, Role: f.Role}
			x, good := c.value(sub, sub.Name, val, probs)
			ok = ok && good
			out = append(out, MapEntry{Key: k.Value, Value: x, Pos: valuePos(c.file, val)})
		}
		return out, ok
	case Object:
		sub, ps := Decode(c.file, c.where, f.Fields, v, pos)
		sub.probs = c.probs
		*probs = append(*probs, prefixed(ps, name)...)
		c.refs = append(c.refs, sub.refs...)
		return sub, len(ps) == 0
	case List:
		if v.Kind != yaml.SequenceNode {
			return bad("a list")
		}
		out := make([]*Config, 0, len(v.Content))
		ok := true
		for i, it := range v.Content {
			sub, ps := Decode(c.file, c.where, f.Fields, it, valuePos(c.file, it))
			sub.probs = c.probs
			*probs = append(*probs, prefixed(ps, fmt.Sprintf("%s[%d]", name, i))...)
			c.refs = append(c.refs, sub.refs...)
			ok = ok && len(ps) == 0
			out = append(out, sub)
		}
		return out, ok
	case Any:
		var x any
		if err := v.Decode(&x); err != nil {
			if strings.Contains(err.Error(), "excessive aliasing") {
				c.problem(probs, pos, "field %q: its YAML aliases expand too far (each alias copies its anchor; nested aliases multiply): write the value out or use fewer aliases", name)
				return nil, false
			}
			c.problem(probs, pos, "field %q: %v", name, strings.TrimPrefix(err.Error(), "yaml: "))
			return nil, false
		}
		return normalize(x), true
	}
	panic("nodes: field " + name + " has unknown kind " + string(f.Kind))
}

// prefixed names the enclosing field in nested problems:
// `steps[1] (switch): cases[0]: unknown field "wen"`.
func prefixed(ps Problems, field string) Problems {
	for i := range ps {
		if j := strings.Index(ps[i].Msg, "): "); j >= 0 {
			ps[i].Msg = ps[i].Msg[:j+3] + field + ": " + ps[i].Msg[j+3:]
		} else {
			ps[i].Msg = field + ": " + ps[i].Msg
		}
	}
	return ps
}

func (c *Config) inRange(f Field, name string, x float64, pos Pos, probs *Problems) bool {
	if f.Max > f.Min && (x < f.Min || x > f.Max) {
		c.problem(probs, pos, "field %q: %v is out of range [%v, %v]", name, x, f.Min, f.Max)
		return false
	}
	return true
}

func (c *Config) ref(f Field, value string, pos Pos) {
	if f.Role != "" {
		c.refs = append(c.refs, Ref{Role: f.Role, Value: value, Pos: pos})
	}
}

// exprProblem reports an expression error at its place in the file.
func (c *Config) exprProblem(probs *Problems, name string, v *yaml.Node, err error) {
	pos := valuePos(c.file, v)
	var ee *eval.Error
	if errors.As(err, &ee) {
		if ee.Line <= 1 {
			pos.Col += ee.Column
		} else if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			pos.Line += ee.Line
			pos.Col = v.Column + 2 + ee.Column
		}
		c.problem(probs, pos, "field %q: bad expression: %s", name, ee.Msg)
		return
	}
	c.problem(probs, pos, "field %q: bad expression: %v", name, err)
}

// valuePos is where a scalar's text starts (after an opening quote).
func valuePos(file string, v *yaml.Node) Pos {
	p := PosOf(file, v)
	if v != nil && v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		p.Col++
	}
	return p
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!null":
		return "nothing"
	case "!!str":
		return fmt.Sprintf("%q", n.Value)
	}
	return n.Value
}

func fieldNames(fields []Field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Name
	}
	return out
}

// suggest returns ` (did you mean "x"?)` for the closest candidate within
// a third of the word's length in edits, or "".
func suggest(word string, candidates []string) string {
	best, bestD := "", len(word)/3+1
	for _, c := range candidates {
		if d := fuzzy.LevenshteinDistance(strings.ToLower(word), strings.ToLower(c)); d < bestD || d == bestD && best == "" && d <= 1 {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// Suggest is suggest for other packages' names (node types, branches).
func Suggest(word string, candidates []string) string { return suggest(word, candidates) }

// normalize turns YAML's map[string]any trees into JSON-compatible values:
// integers become float64, as encoding/json decodes them.
func normalize(x any) any {
	switch v := x.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = normalize(e)
		}
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	}
	return x
}

// Refs returns the values of fields with a Role, nested ones included.
func (c *Config) Refs() []Ref { return c.refs }

// Has reports whether the flow set the field.
func (c *Config) Has(name string) bool { c.field(name); _, ok := c.vals[name]; return ok }

// Pos returns the position of the field's value, or of the block.
func (c *Config) Pos(name string) Pos {
	if p, ok := c.pos[name]; ok {
		return p
	}
	return c.self
}

// Problemf reports a problem with the field's value (with the block when
// name is ""), at its position and prefixed like lint messages, for
// constructors' semantic checks. It does not stop anything: report every
// problem, then return Err.
func (c *Config) Problemf(name, format string, args ...any) {
	c.ProblemAt(c.Pos(name), name, format, args...)
}

// ProblemAt is Problemf at a position of its own, such as a MapEntry's.
func (c *Config) ProblemAt(pos Pos, name, format string, args ...any) {
	if c.probs == nil {
		c.probs = new(Problems)
	}
	*c.probs = append(*c.probs, c.problemAt(pos, name, format, args...))
}

func (c *Config) problemAt(pos Pos, name, format string, args ...any) Problem {
	msg := fmt.Sprintf(format, args...)
	if name != "" {
		msg = fmt.Sprintf("field %q: %s", name, msg)
	}
	return Problem{Pos: pos, Msg: c.prefix() + msg}
}

// Err returns the problems reported on the config and on the configs
// nested in it (Problems, sorted by position), or nil when there are none.
func (c *Config) Err() error {
	if c.probs == nil || len(*c.probs) == 0 {
		return nil
	}
	return append(Problems(nil), *c.probs...).Err()
}

// Errorf returns one problem at the field's position as an error
// (Problems), for a constructor that cannot go on; to report several, use
// Problemf and Err.
func (c *Config) Errorf(name, format string, args ...any) error {
	return Problems{c.problemAt(c.Pos(name), name, format, args...)}
}

func (c *Config) field(name string) Field {
	f, ok := c.fields[name]
	if !ok {
		panic("nodes: config has no field " + strconv.Quote(name))
	}
	return f
}

func (c *Config) get(name string, kinds ...Kind) any {
	f := c.field(name)
	ok := false
	for _, k := range kinds {
		ok = ok || f.Kind == k
	}
	if !ok {
		panic(fmt.Sprintf("nodes: field %q is %s, not %v", name, f.Kind, kinds))
	}
	if v, set := c.vals[name]; set {
		return v
	}
	return f.Default
}

func (c *Config) String(name string) string {
	v, _ := c.get(name, String, Enum).(string)
	return v
}

func (c *Config) Int(name string) int {
	v, _ := c.get(name, Int).(int)
	return v
}

func (c *Config) Float(name string) float64 {
	v, _ := c.get(name, Float).(float64)
	return v
}

func (c *Config) Bool(name string) bool {
	v, _ := c.get(name, Bool).(bool)
	return v
}

func (c *Config) Duration(name string) time.Duration {
	v, _ := c.get(name, Duration).(time.Duration)
	return v
}

func (c *Config) Strings(name string) []string {
	v, _ := c.get(name, StringList).([]string)
	return v
}

// Expr returns a compiled expression or condition, nil when absent.
func (c *Config) Expr(name string) *eval.Program {
	v := c.get(name, Expr, Condition)
	if p, ok := v.(*eval.Program); ok {
		return p
	}
	if s, ok := v.(string); ok { // a default given as source
		p, err := eval.Compile(s, c.field(name).Kind == Condition)
		if err != nil {
			panic("nodes: bad default expression for " + name + ": " + err.Error())
		}
		return p
	}
	return nil
}

// Template returns a compiled template, nil when absent and no default.
func (c *Config) Template(name string) *eval.Template {
	v := c.get(name, Template)
	if t, ok := v.(*eval.Template); ok {
		return t
	}
	if s, ok := v.(string); ok {
		t, err := eval.ParseTemplate(s)
		if err != nil {
			panic("nodes: bad default template for " + name + ": " + err.Error())
		}
		return t
	}
	return nil
}

func (c *Config) Map(name string) []MapEntry {
	v, _ := c.get(name, Map).([]MapEntry)
	return v
}

func (c *Config) Object(name string) *Config {
	v, _ := c.get(name, Object).(*Config)
	return v
}

func (c *Config) List(name string) []*Config {
	v, _ := c.get(name, List).([]*Config)
	return v
}

func (c *Config) Any(name string) any { return c.get(name, Any) }

// Names returns the names of the fields the flow set, sorted.
func (c *Config) Names() []string {
	out := make([]string, 0, len(c.vals))
	for n := range c.vals {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
