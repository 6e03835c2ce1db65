package nodes

// Kind is a config field's type.
type Kind string

const (
	String     Kind = "string"
	Int        Kind = "int"
	Float      Kind = "float"
	Bool       Kind = "bool"
	Duration   Kind = "duration" // "1.5s", "200ms"
	Enum       Kind = "enum"     // one of Field.Options
	Expr       Kind = "expr"     // an expression (package eval)
	Condition  Kind = "condition"
	Template   Kind = "template" // text with {{ expression }} parts
	StringList Kind = "string_list"
	Map        Kind = "map"    // string keys to values of Field.Elem
	Object     Kind = "object" // nested Field.Fields
	List       Kind = "list"   // a list of objects with Field.Fields
	Any        Kind = "any"    // any YAML value, passed as JSON-like Go values
)

// Role marks string and template fields whose value names something the
// linter cross-checks across the flow.
type Role string

const (
	RoleTopic  Role = "topic"  // published to: a flow must not publish to its own trigger topic
	RoleBranch Role = "branch" // must name one of the flow's branches
	RoleBucket Role = "bucket"
)

// Field describes one config field of a node type.
type Field struct {
	Name     string
	Kind     Kind
	Doc      string
	Default  any  // of the Go type the getter returns; nil for none
	Required bool // must be present (a Default makes no sense then)
	Options  []string
	Elem     Kind    // value kind of a Map, element kind of a StringList is always string
	Fields   []Field // of an Object, or of each item of a List
	Role     Role
	// Min and Max bound Int and Float fields when Max > Min.
	Min, Max float64
}

// Example is a usage example shown in `sluice nodes`.
type Example struct {
	Title string
	YAML  string // the step, as it appears under steps:
}

// Spec describes a node type. The spec is the node's documentation: `sluice
// nodes`, the JSON Schema and the linter are all generated from it.
type Spec struct {
	Type        string // namespaced lowercase: "image.thumbnail"
	Summary     string // one line
	Description string
	Fields      []Field
	Examples    []Example
	// New constructs the node from a validated config. It must not do I/O
	// (that belongs in Start), so `sluice validate` can call it. Problems
	// with a field are reported with c.Problemf (every one, each at its
	// position), and New then returns c.Err(). Callers use Construct.
	New func(c *Config, d Deps) (Node, error)
}

// Construct builds the node from a decoded config with s.New. A
// constructor that reported problems on c (Problemf) but returned no error
// still fails, with those problems: callers (the flow loader, nodestest)
// use Construct rather than New.
func (s *Spec) Construct(c *Config, d Deps) (Node, error) {
	n, err := s.New(c, d)
	if err != nil {
		return nil, err
	}
	if err := c.Err(); err != nil {
		if cl, ok := n.(Closer); ok {
			_ = cl.Close()
		}
		return nil, err
	}
	return n, nil
}
