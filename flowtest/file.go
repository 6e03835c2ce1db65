// Package flowtest runs flow tests: YAML files named *_test.yaml beside
// the flows they test, each naming a flow, inputs (messages, objects, HTTP
// requests) and what must follow (payloads, published messages, objects,
// rows, state machine states, dead letters, responses). Cases run in
// process on the real engine over mem:// broker and storage and a
// throwaway state folder; `sluice test` is its command.
package flowtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

// Field names of a test file.
const (
	fFlow          = "flow"
	fEnv           = "env"
	fRequires      = "requires"
	fShared        = "shared"
	fCases         = "cases"
	fName          = "name"
	fSkip          = "skip"
	fTimeout       = "timeout"
	fBefore        = "before"
	fMessage       = "message"
	fObject        = "object"
	fRequest       = "request"
	fStatus        = "status"
	fPayload       = "payload"
	fPayloadSubset = "payload_subset"
	fExpect        = "expect"
	fPublished     = "published"
	fObjects       = "objects"
	fRows          = "rows"
	fMachines      = "machines"
	fDeadLetter    = "dead_letter"
	fResponse      = "response"
)

// Statuses a case may expect of its run.
const (
	StatusSucceeded    = "succeeded"
	StatusDeadLettered = "dead_lettered"
	StatusFiltered     = "filtered"
	StatusFailed       = "failed"
)

var messageFields = []nodes.Field{
	{Name: "topic", Kind: nodes.String, Doc: "Topic to publish to; the flow's trigger topic by default."},
	{Name: "payload", Kind: nodes.Any, Doc: "The message: a value (sent as JSON) or a string (sent as is)."},
	{Name: "meta", Kind: nodes.Map, Elem: nodes.String, Doc: "Message metadata."},
	{Name: "key", Kind: nodes.String, Doc: "Partition key."},
}

var objectFields = []nodes.Field{
	{Name: "key", Kind: nodes.String, Required: true, Doc: "Object key."},
	{Name: "bucket", Kind: nodes.String, Doc: "Bucket; the trigger's by default."},
	{Name: "file", Kind: nodes.String, Doc: "Fixture file, relative to the test file."},
	{Name: "content", Kind: nodes.String, Doc: "The object's text, instead of a file."},
	{Name: "content_type", Kind: nodes.String},
}

var requestFields = []nodes.Field{
	{Name: "method", Kind: nodes.String, Default: "POST"},
	{Name: "path", Kind: nodes.String, Required: true, Doc: "Path and query, e.g. /images?x=1."},
	{Name: "headers", Kind: nodes.Map, Elem: nodes.String},
	{Name: "body", Kind: nodes.String, Doc: "Raw body."},
	{Name: "json", Kind: nodes.Any, Doc: "Body sent as JSON (Content-Type application/json)."},
	{Name: "file", Kind: nodes.String, Doc: "Body read from a fixture file, relative to the test file."},
	{Name: "form_file", Kind: nodes.String, Doc: "Multipart form field the file is sent in (multipart/form-data), instead of a raw body."},
}

var inputFields = []nodes.Field{
	{Name: fMessage, Kind: nodes.Object, Fields: messageFields},
	{Name: fObject, Kind: nodes.Object, Fields: objectFields},
	{Name: fRequest, Kind: nodes.Object, Fields: requestFields},
}

var responseFields = []nodes.Field{
	{Name: "status", Kind: nodes.Int, Min: 100, Max: 599},
	{Name: "json", Kind: nodes.Any, Doc: "JSON subset the body must contain."},
	{Name: "body", Kind: nodes.String, Doc: "Exact body."},
	{Name: "headers", Kind: nodes.Map, Elem: nodes.String, Doc: "Headers, each matching exactly."},
}

var caseFields = append([]nodes.Field{
	{Name: fName, Kind: nodes.String, Required: true},
	{Name: fFlow, Kind: nodes.String, Doc: "The flow this case drives, when the file loads several."},
	{Name: fSkip, Kind: nodes.String, Doc: "Skip the case, with this reason."},
	{Name: fTimeout, Kind: nodes.Duration, Default: time.Minute, Doc: "How long the case's runs may take."},
	{Name: fBefore, Kind: nodes.List, Fields: inputFields, Doc: "Inputs run first, in order, each to its end."},
	{Name: fStatus, Kind: nodes.Enum, Options: []string{StatusSucceeded, StatusDeadLettered, StatusFiltered, StatusFailed}},
	{Name: fPayload, Kind: nodes.Any, Doc: "The run's final payload, exactly."},
	{Name: fPayloadSubset, Kind: nodes.Any, Doc: "A JSON subset of the run's final payload."},
	{Name: fExpect, Kind: nodes.StringList, Doc: "Expressions over payload, meta, steps, object, run that must be true."},
	{Name: fPublished, Kind: nodes.Map, Elem: nodes.Any, Doc: "Per topic: a count, or a list of payload subsets in order."},
	{Name: fObjects, Kind: nodes.Map, Elem: nodes.Any, Doc: "Per bucket/key: exists, size, width, height, content_type, json."},
	{Name: fRows, Kind: nodes.Map, Elem: nodes.Any, Doc: "Per table of data.db (db.insert's default database; DATABASE/TABLE for another): rows, each a subset; [] for none."},
	{Name: fMachines, Kind: nodes.Map, Elem: nodes.Any, Doc: "Per machine: entity key to state."},
	{Name: fDeadLetter, Kind: nodes.String, Doc: "The run is dead-lettered with an error matching this regexp."},
	{Name: fResponse, Kind: nodes.Object, Fields: responseFields},
}, inputFields...)

var fileFields = []nodes.Field{
	{Name: fFlow, Kind: nodes.String, Required: true, Doc: "A flow file (relative to the test file) or a flow name in the test file's folder."},
	{Name: fEnv, Kind: nodes.Map, Elem: nodes.String, Doc: "Environment for the flow's ${NAME} references and *_env fields; ${SLUICE_TEST_URL} in a value is the address the case's HTTP routes are served at."},
	{Name: fShared, Kind: nodes.Bool, Doc: "Run the cases one after another on one engine (faster where nodes start something heavy: ONNX sessions, function workers); cases then see each other's effects, so give each its own keys and ids."},
	{Name: fRequires, Kind: nodes.Map, Elem: nodes.String, Doc: "Files the flow needs (relative to the test file), each with how to make it: cases are skipped while one is missing (under CI=true they fail)."},
	// Each case is decoded on its own against caseFields, so the
	// problems of every case are reported at once.
	{Name: fCases, Kind: nodes.Any, Required: true, Doc: "The cases: name, an input, expectations."},
}

// File is a parsed test file.
type File struct {
	Path string // as given
	Dir  string
	Flow string // the flow reference, as written
	Pos  nodes.Pos
	Env  map[string]string
	// Shared: the cases run one after another on one engine.
	Shared bool
	// Requires maps files the flow needs to how to make them.
	Requires []Requirement
	Cases    []*Case
}

// Requirement is a file a test file's flow needs.
type Requirement struct {
	Path, How string
	Pos       nodes.Pos
}

// Case is one test case.
type Case struct {
	Name    string
	Pos     nodes.Pos
	Flow    string // "": the file's (only) flow
	Skip    string
	Timeout time.Duration
	Before  []*Input
	Input   *Input
	node    *yaml.Node // the case's mapping, for positions of expectations
	cfg     *nodes.Config
	expect  []expectation
}

// Input is a message, an object or a request.
type Input struct {
	Pos     nodes.Pos
	Message *MessageInput
	Object  *ObjectInput
	Request *RequestInput
}

// MessageInput is a message published to a topic.
type MessageInput struct {
	Topic   string
	Payload []byte
	Meta    map[string]string
	Key     string
}

// ObjectInput is an object put into a bucket.
type ObjectInput struct {
	Bucket, Key, ContentType string
	Data                     []byte
}

// RequestInput is an HTTP request to the flows' routes.
type RequestInput struct {
	Method, Path string
	Headers      map[string]string
	Body         []byte
	FormFile     string // multipart field name, or ""
	FileName     string
}

// expectation is one check of a case, with the position it was written at.
type expectation struct {
	pos   nodes.Pos
	what  string
	check func(*outcome) []Failure
}

// Failure is one unmet expectation, at the test file's position.
type Failure struct {
	Pos nodes.Pos
	Msg string
}

func (f Failure) String() string { return f.Pos.String() + ": " + f.Msg }

// ParseFile reads and checks a test file; problems (an unknown field, a
// bad case, a missing fixture) are nodes.Problems at file:line:col.
func ParseFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses a test file's content; path names it in messages and
// anchors fixture paths.
func Parse(path string, data []byte) (*File, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nodes.Problems{{Pos: nodes.Pos{File: path, Line: 1, Col: 1}, Msg: "empty test file"}}
		}
		p := nodes.Problem{Pos: nodes.Pos{File: path, Line: 1, Col: 1}, Msg: "invalid YAML: " + err.Error()}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			if m[1] != "" {
				p.Line, _ = strconv.Atoi(m[1])
			}
			p.Msg = "invalid YAML: " + m[2]
		}
		return nil, nodes.Problems{p}
	}
	if len(doc.Content) == 0 {
		return nil, nodes.Problems{{Pos: nodes.Pos{File: path, Line: 1, Col: 1}, Msg: "empty test file"}}
	}
	root := doc.Content[0]
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, nodes.Problems{{Pos: nodes.PosOf(path, &more), Msg: "one YAML document per test file (put more cases under cases:)"}}
	}
	c, probs := nodes.Decode(path, "", fileFields, root, nodes.PosOf(path, root))
	f := &File{Path: path, Dir: filepath.Dir(path), Flow: c.String(fFlow), Pos: c.Pos(fFlow), Env: map[string]string{}, Shared: c.Bool(fShared)}
	for _, e := range c.Map(fEnv) {
		f.Env[e.Key], _ = e.Value.(string)
	}
	reqs := child(root, fRequires)
	for i, e := range c.Map(fRequires) {
		how, _ := e.Value.(string)
		pos := e.Pos
		if reqs != nil && 2*i < len(reqs.Content) {
			pos = nodes.PosOf(path, reqs.Content[2*i]) // the file's name
		}
		f.Requires = append(f.Requires, Requirement{Path: e.Key, How: how, Pos: pos})
	}
	caseNodes := child(root, fCases)
	if caseNodes != nil && caseNodes.Kind != yaml.SequenceNode {
		probs.Add(nodes.PosOf(path, caseNodes), "cases: want a list of cases")
		caseNodes = nil
	}
	seen := map[string]bool{}
	for i, n := range caseNodes.Content {
		where := fmt.Sprintf("cases[%d]", i)
		cc, ps := nodes.Decode(path, where, caseFields, n, nodes.PosOf(path, n))
		probs = append(probs, ps...)
		if n.Kind != yaml.MappingNode {
			continue
		}
		tc := f.parseCase(where, cc, n, &probs)
		if seen[tc.Name] {
			probs.Add(cc.Pos(fName), "%s: duplicate case name %q", where, tc.Name)
		}
		seen[tc.Name] = true
		f.Cases = append(f.Cases, tc)
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

var (
	caseNameRE = regexp.MustCompile(`^[^\s/]+$`)
	yamlLine   = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)
)

func (f *File) parseCase(where string, c *nodes.Config, n *yaml.Node, probs *nodes.Problems) *Case {
	tc := &Case{Name: c.String(fName), Pos: nodes.PosOf(f.Path, n), Flow: c.String(fFlow), Skip: c.String(fSkip),
		Timeout: c.Duration(fTimeout), node: n, cfg: c}
	if c.Has(fName) && !caseNameRE.MatchString(tc.Name) {
		probs.Add(c.Pos(fName), "%s: case name %q: no spaces or '/' (it is matched by --run like a Go test name)", where, tc.Name)
	}
	for i, b := range c.List(fBefore) {
		if in := f.parseInput(b, probs, fmt.Sprintf("%s: before[%d]", where, i)); in != nil {
			tc.Before = append(tc.Before, in)
		}
	}
	tc.Input = f.parseInput(c, probs, where)
	if child(n, fMessage) == nil && child(n, fObject) == nil && child(n, fRequest) == nil && tc.Skip == "" {
		probs.Add(tc.Pos, "%s: no input: give one of message, object or request", where)
	}
	tc.expect = f.parseExpectations(where, tc, probs)
	return tc
}

// parseInput reads the one input of c (a case or a before item).
func (f *File) parseInput(c *nodes.Config, probs *nodes.Problems, what string) *Input {
	var given []string
	for _, k := range []string{fMessage, fObject, fRequest} {
		if c.Has(k) {
			given = append(given, k)
		}
	}
	switch len(given) {
	case 0:
		if strings.Contains(what, "before") {
			probs.Add(c.Pos(""), "%s: give one of message, object or request", what)
		}
		return nil
	case 1:
	default:
		probs.Add(c.Pos(given[1]), "%s: give one input, not %s", what, strings.Join(given, " and "))
		return nil
	}
	in := &Input{Pos: c.Pos(given[0])}
	switch given[0] {
	case fMessage:
		m := c.Object(fMessage)
		if m == nil {
			return nil // its problems are reported
		}
		mi := &MessageInput{Topic: m.String("topic"), Key: m.String("key"), Meta: map[string]string{}}
		for _, e := range m.Map("meta") {
			mi.Meta[e.Key], _ = e.Value.(string)
		}
		switch p := m.Any("payload").(type) {
		case nil:
			mi.Payload = []byte("{}")
		case string:
			mi.Payload = []byte(p)
		default:
			mi.Payload = mustJSON(p)
		}
		in.Message = mi
	case fObject:
		o := c.Object(fObject)
		if o == nil {
			return nil
		}
		oi := &ObjectInput{Bucket: o.String("bucket"), Key: o.String("key"), ContentType: o.String("content_type")}
		switch {
		case o.Has("file") && o.Has("content"):
			probs.Add(o.Pos("content"), "%s: object: give file or content, not both", what)
		case o.Has("file"):
			data, err := os.ReadFile(filepath.Join(f.Dir, o.String("file")))
			if err != nil {
				probs.Add(o.Pos("file"), "%s: object: fixture: %v", what, err)
			}
			oi.Data = data
		default:
			oi.Data = []byte(o.String("content"))
		}
		in.Object = oi
	case fRequest:
		r := c.Object(fRequest)
		if r == nil {
			return nil
		}
		ri := &RequestInput{Method: strings.ToUpper(r.String("method")), Path: r.String("path"), Headers: map[string]string{}, FormFile: r.String("form_file")}
		for _, e := range r.Map("headers") {
			ri.Headers[e.Key], _ = e.Value.(string)
		}
		if !strings.HasPrefix(ri.Path, "/") {
			probs.Add(r.Pos("path"), "%s: request: path %q must start with /", what, ri.Path)
		}
		n := 0
		for _, k := range []string{"body", "json", "file"} {
			if r.Has(k) {
				n++
			}
		}
		if n > 1 {
			probs.Add(r.Pos("body"), "%s: request: give one of body, json and file", what)
		}
		switch {
		case r.Has("json"):
			ri.Body = mustJSON(r.Any("json"))
			if _, ok := ri.Headers["Content-Type"]; !ok {
				ri.Headers["Content-Type"] = "application/json"
			}
		case r.Has("file"):
			data, err := os.ReadFile(filepath.Join(f.Dir, r.String("file")))
			if err != nil {
				probs.Add(r.Pos("file"), "%s: request: fixture: %v", what, err)
			}
			ri.Body, ri.FileName = data, filepath.Base(r.String("file"))
		default:
			ri.Body = []byte(r.String("body"))
		}
		if ri.FormFile != "" && ri.FileName == "" {
			probs.Add(r.Pos("form_file"), "%s: request: form_file needs a file", what)
		}
		in.Request = ri
	}
	return in
}

// compileExpect compiles an expect expression as the flow's linter would.
func compileExpect(src string) (*eval.Program, error) { return eval.Compile(src, true) }

// child returns the value of key in mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// nodeAt returns n's descendant along path (mapping keys and sequence
// indexes), or nil.
func nodeAt(n *yaml.Node, path ...any) *yaml.Node {
	for _, p := range path {
		if n == nil {
			return nil
		}
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		switch k := p.(type) {
		case string:
			n = child(n, k)
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return nil
			}
			n = n.Content[k]
		}
	}
	return n
}

// at returns the position of n's descendant along path, or of the
// deepest node found on the way.
func at(file string, n *yaml.Node, path ...any) nodes.Pos {
	for i := len(path); i >= 0; i-- {
		if d := nodeAt(n, path[:i]...); d != nil {
			return nodes.PosOf(file, d)
		}
	}
	return nodes.PosOf(file, n)
}

func mustJSON(v any) []byte {
	b, err := jsonMarshal(v)
	if err != nil {
		return []byte(fmt.Sprint(v))
	}
	return b
}
