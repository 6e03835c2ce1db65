package flows

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/nodes"
)

// Loader reads flow files. The zero value uses the global node registry,
// the process environment and no services (enough to validate).
type Loader struct {
	Registry *nodes.Registry
	// Lookup resolves ${NAME} references; os.LookupEnv by default.
	Lookup func(name string) (string, bool)
	// Deps are handed to node constructors.
	Deps nodes.Deps
}

func (l Loader) registry() *nodes.Registry {
	if l.Registry != nil {
		return l.Registry
	}
	return nodes.Global()
}

// Load reads the flow files named by paths; a folder means every .yaml and
// .yml file below it (hidden folders skipped). It returns every problem of
// every file at once, as nodes.Problems.
func (l Loader) Load(paths ...string) ([]*Flow, error) {
	files, err := flowFiles(paths)
	if err != nil {
		return nil, err
	}
	var all []*Flow
	var probs nodes.Problems
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		flows, ps := l.Parse(f, data)
		all = append(all, flows...)
		probs = append(probs, ps...)
	}
	probs = append(probs, crossCheck(all)...)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return all, nil
}

// IsTestFile reports whether path is a flow test file (name_test.yaml or
// name_test.yml, run by sluice test): folders loaded as flows skip them.
func IsTestFile(path string) bool {
	return strings.HasSuffix(path, "_test.yaml") || strings.HasSuffix(path, "_test.yml")
}

func flowFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) && !IsTestFile(path) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no flow files (*.yaml, *.yml) in %s", strings.Join(paths, ", "))
	}
	sort.Strings(files)
	return files, nil
}

// Parse reads the flows of one file (several YAML documents make several
// flows).
func (l Loader) Parse(file string, data []byte) ([]*Flow, nodes.Problems) {
	var probs nodes.Problems
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*Flow
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			probs = append(probs, yamlError(file, err))
			return out, probs
		}
		if len(doc.Content) == 0 {
			continue
		}
		lookup := l.Lookup
		if lookup == nil {
			lookup = osLookup
		}
		interpolate(file, &doc, lookup, &probs)
		if f := l.parseFlow(file, doc.Content[0], &probs); f != nil {
			f.spec = specHash(doc.Content[0]) // what Engine.Reload compares
			out = append(out, f)
		}
	}
	if len(out) == 0 && len(probs) == 0 {
		probs.Add(nodes.Pos{File: file, Line: 1, Col: 1}, "no flow in file")
	}
	return out, probs
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

func yamlError(file string, err error) nodes.Problem {
	m := yamlLine.FindStringSubmatch(err.Error())
	p := nodes.Problem{Pos: nodes.Pos{File: file, Line: 1, Col: 1}, Msg: "invalid YAML: " + err.Error()}
	if m != nil {
		if m[1] != "" {
			fmt.Sscanf(m[1], "%d", &p.Line)
		}
		p.Msg = "invalid YAML: " + m[2]
	}
	return p
}

func (l Loader) parseFlow(file string, root *yaml.Node, probs *nodes.Problems) *Flow {
	c, ps := nodes.Decode(file, "", flowFields, root, nodes.PosOf(file, root))
	*probs = append(*probs, ps...)
	if root.Kind != yaml.MappingNode {
		return nil
	}
	f := &Flow{
		Name: c.String("name"), Description: c.String("description"), File: file, Pos: c.Pos("name"),
		Concurrency: c.Int("concurrency"), Timeout: c.Duration("timeout"),
		DeadLetter: c.String("dead_letter"), MaxBody: int64(c.Int("max_body")), Record: c.String("record"),
		Branches: map[string][]*Step{},
	}
	if c.Has("name") && !flowNameRE.MatchString(f.Name) {
		probs.Add(c.Pos("name"), "name %q: use 1 to 63 lowercase letters, digits, '.', '_' or '-'", f.Name)
	}
	if f.DeadLetter == "" {
		f.DeadLetter = DeadLetterTopic(f.Name)
	} else if !validTopic(f.DeadLetter) {
		probs.Add(c.Pos("dead_letter"), "dead_letter: %q is not a valid topic name (letters, digits and -$:._)", f.DeadLetter)
	}
	f.Retry = parseRetry(c.Object("retry"), defaultRetry)
	var stepsNode, branchesNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "on":
			f.Trigger = parseTrigger(file, root.Content[i+1], probs)
		case "steps":
			stepsNode = root.Content[i+1]
		case "branches":
			branchesNode = root.Content[i+1]
		}
	}
	if h := f.Trigger.HTTP; h != nil && h.MaxBody == 0 {
		h.MaxBody = defaultRequestBody
		if c.Has("max_body") {
			h.MaxBody = f.MaxBody
		}
	}
	if f.Record == RecordFailures && f.Trigger.Kind == TriggerHTTP {
		probs.Add(c.Pos("record"), "record: failures does not apply to an HTTP flow: its answers and async results are read from its run records")
	}
	if !c.Has("concurrency") && (f.Trigger.Kind == TriggerBucket || f.Trigger.Kind == TriggerHTTP) {
		// Objects and requests need no order: use every core.
		f.Concurrency = runtime.NumCPU()
	}
	ids := &stepIDs{used: map[string]bool{}, next: map[string]int{}}
	if stepsNode != nil {
		f.Steps = l.parseSteps(file, f, "steps", stepsNode, ids, probs)
		if stepsNode.Kind == yaml.SequenceNode && len(stepsNode.Content) == 0 {
			probs.Add(nodes.PosOf(file, stepsNode), "steps: a flow needs at least one step")
		}
	}
	if branchesNode != nil {
		if branchesNode.Kind != yaml.MappingNode {
			probs.Add(nodes.PosOf(file, branchesNode), "branches: want a mapping of branch name to steps")
		} else {
			for i := 0; i+1 < len(branchesNode.Content); i += 2 {
				k, v := branchesNode.Content[i], branchesNode.Content[i+1]
				if !stepIDRE.MatchString(k.Value) {
					probs.Add(nodes.PosOf(file, k), "branch name %q: use letters, digits and '_'", k.Value)
				}
				f.Branches[k.Value] = l.parseSteps(file, f, "branches."+k.Value, v, ids, probs)
			}
		}
	}
	lintRefs(f, probs)
	lintBatch(f, c.Pos("concurrency"), probs)
	return f
}

func (l Loader) parseSteps(file string, f *Flow, path string, n *yaml.Node, ids *stepIDs, probs *nodes.Problems) []*Step {
	if n.Kind != yaml.SequenceNode {
		probs.Add(nodes.PosOf(file, n), "%s: want a list of steps", path)
		return nil
	}
	reg := l.registry()
	var steps []*Step
	for i, sn := range n.Content {
		where := fmt.Sprintf("%s[%d]", path, i)
		if sn.Kind == yaml.AliasNode {
			sn = sn.Alias // a step written as an alias (- *step) runs like its anchor
		}
		sc, ps := nodes.Decode(file, where, stepFields, sn, nodes.PosOf(file, sn))
		*probs = append(*probs, ps...)
		if sn.Kind != yaml.MappingNode || !sc.Has("node") {
			continue
		}
		s := &Step{ID: sc.String("id"), Type: sc.String("node"), Pos: nodes.PosOf(file, sn), When: sc.Expr("when"), Timeout: sc.Duration("timeout")}
		if r := sc.Object("retry"); r != nil {
			rt := parseRetry(r, defaultRetry)
			s.Retry = &rt
		}
		s.where = fmt.Sprintf("%s (%s)", where, s.Type)
		if s.ID == "" {
			s.ID = ids.auto(strings.NewReplacer(".", "_", "-", "_").Replace(s.Type))
		} else if !stepIDRE.MatchString(s.ID) {
			probs.Add(sc.Pos("id"), "%s: id %q: use letters, digits and '_' (so expressions can say steps.%s)", where, s.ID, s.ID)
		} else if ids.used[s.ID] {
			probs.Add(sc.Pos("id"), "%s: duplicate step id %q", where, s.ID)
		}
		ids.used[s.ID] = true
		spec, ok := reg.Lookup(s.Type)
		if !ok {
			probs.Add(sc.Pos("node"), "%s: unknown node type %q%s", where, s.Type, nodes.Suggest(s.Type, reg.Types()))
			continue
		}
		var with *yaml.Node
		for j := 0; j+1 < len(sn.Content); j += 2 {
			if sn.Content[j].Value == "with" {
				with = sn.Content[j+1]
			}
		}
		whereT := s.where
		cfg, ps := nodes.Decode(file, whereT, spec.Fields, with, s.Pos)
		*probs = append(*probs, ps...)
		s.Config = cfg
		steps = append(steps, s) // kept for cross-checks even when broken
		if len(ps) > 0 {
			continue // construction would only repeat the problems
		}
		deps := l.Deps
		deps.Concurrency = f.Concurrency // pools (sessions, workers) sized by the flow
		if deps.Logger != nil {
			deps.Logger = deps.Logger.With("flow", f.Name, "step", s.ID, "node", s.Type)
		}
		node, err := spec.Construct(cfg, deps)
		if err != nil {
			var nps nodes.Problems
			if errors.As(err, &nps) {
				*probs = append(*probs, nps...)
			} else {
				probs.Add(s.Pos, "%s: %v", whereT, err)
			}
			continue
		}
		s.Node = node
	}
	return steps
}

// stepIDs are a flow's step ids; auto names steps without one after their
// node type (image_thumbnail, image_thumbnail_2, …) in constant time per
// step, however many share a type.
type stepIDs struct {
	used map[string]bool
	next map[string]int // the next suffix to try, per base
}

func (s *stepIDs) auto(base string) string {
	if !s.used[base] {
		return base
	}
	j := max(s.next[base], 2)
	for s.used[fmt.Sprintf("%s_%d", base, j)] {
		j++
	}
	s.next[base] = j + 1
	return fmt.Sprintf("%s_%d", base, j)
}
