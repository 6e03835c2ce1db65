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
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
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
			if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
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

var (
	flowNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	stepIDRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	topicRE    = regexp.MustCompile(`^[A-Za-z0-9$:._-]{1,200}$`)
)

var triggerFields = []nodes.Field{
	{Name: "topic", Kind: nodes.String, Doc: "Run for each message on this topic."},
	{Name: "group", Kind: nodes.String, Doc: "Consumer group; the flow's name by default. Flows in one group share the messages."},
	{Name: "bucket", Kind: nodes.String, Doc: "Run for each object event of this bucket."},
	{Name: "prefix", Kind: nodes.String, Doc: "Bucket triggers: only keys starting with this."},
	{Name: "suffix", Kind: nodes.StringList, Doc: "Bucket triggers: only keys ending with one of these (case-insensitive)."},
	{Name: "events", Kind: nodes.StringList, Default: []string{"created"}, Doc: "Bucket triggers: created, removed."},
	{Name: "events_topic", Kind: nodes.String, Doc: "Bucket triggers: also read the bucket's notifications (S3, MinIO or COS records) from this topic, e.g. where MinIO's Kafka target writes them."},
	{Name: "http", Kind: nodes.Object, Doc: "Run for each HTTP request on a route.", Fields: []nodes.Field{
		{Name: "path", Kind: nodes.String, Required: true, Doc: "Route, with {param} parts: /images/{id}."},
		{Name: "methods", Kind: nodes.StringList, Default: []string{"POST"}},
		{Name: "mode", Kind: nodes.Enum, Options: []string{"sync", "async", "auto"}, Default: "sync", Doc: "sync: run now, the result is the response; async: queue the request on the broker, answer 202 with the run's status URL; auto: queue it, wait up to wait for the result, else 202."},
		{Name: "wait", Kind: nodes.Duration, Default: 5 * time.Second, Doc: "auto mode: how long to wait for the result before answering 202."},
		{Name: "api_keys_env", Kind: nodes.String, Doc: "Require an API key: the environment variable holding the accepted keys, comma-separated (keys never go in the YAML)."},
		{Name: "api_key_header", Kind: nodes.String, Default: "X-API-Key", Doc: "Header carrying the API key."},
		{Name: "headers", Kind: nodes.StringList, Doc: "Request headers expressions may read (request.headers); others are not exposed."},
		{Name: "hmac_secret_env", Kind: nodes.String, Doc: "Require an HMAC-SHA256 signature of the body, hex, in hmac_header (\"sha256=\" prefix allowed): the environment variable holding the secret."},
		{Name: "hmac_header", Kind: nodes.String, Default: "X-Signature", Doc: "Header carrying the HMAC signature."},
		{Name: "jwt_secret_env", Kind: nodes.String, Doc: "Require a bearer JWT signed with HS256 by the secret in this environment variable; its claims are request.claims."},
		{Name: "jwt_public_key_env", Kind: nodes.String, Doc: "Require a bearer JWT signed with RS256 by the PEM public key in this environment variable."},
		{Name: "jwt_issuer", Kind: nodes.String, Doc: "Required JWT issuer (iss)."},
		{Name: "jwt_audience", Kind: nodes.String, Doc: "Required JWT audience (aud)."},
		{Name: "cors_origins", Kind: nodes.StringList, Doc: "Origins browsers may call this route from (\"*\" for any); preflight requests are answered."},
		{Name: "cors_headers", Kind: nodes.StringList, Doc: "Request headers cross-origin callers may send."},
		{Name: "uploads", Kind: nodes.String, Role: nodes.RoleBucket, Doc: "Accept multipart/form-data: files go to this bucket as <run id>/<file name> (the first one is the run's object, for image steps), other fields into the payload; request.files lists them."},
		{Name: "rate_limit", Kind: nodes.Float, Min: 0, Max: 1e9, Doc: "Requests per second accepted on this route (token bucket); more get 429 with Retry-After. 0: no limit."},
		{Name: "burst", Kind: nodes.Int, Default: 1, Min: 1, Max: 1 << 20, Doc: "Requests above the rate accepted at once."},
		{Name: "max_concurrent", Kind: nodes.Int, Min: 0, Max: 1 << 20, Doc: "Requests handled at once on this route; more get 429. 0: no limit."},
	}},
	{Name: "schedule", Kind: nodes.String, Doc: "Run on a cron schedule (5 fields, or 6 with seconds)."},
	{Name: "timezone", Kind: nodes.String, Doc: "Schedule triggers: IANA time zone; UTC by default."},
	{Name: "catch_up", Kind: nodes.Bool, Default: true, Doc: "Schedule triggers: on start, run the latest tick missed while stopped, once."},
}

var flowFields = []nodes.Field{
	{Name: "name", Kind: nodes.String, Required: true, Doc: "Unique name: lowercase letters, digits, '.', '_', '-'."},
	{Name: "description", Kind: nodes.String},
	{Name: "on", Kind: nodes.Object, Required: true, Fields: triggerFields, Doc: "The trigger."},
	{Name: "concurrency", Kind: nodes.Int, Default: 1, Min: 1, Max: 1024, Doc: "Messages processed at once."},
	{Name: "timeout", Kind: nodes.Duration, Default: 5 * time.Minute, Doc: "Bound on one run."},
	{Name: "retry", Kind: nodes.Object, Doc: "How failing steps are retried (a step's own retry overrides it).", Fields: retryFields},
	{Name: "dead_letter", Kind: nodes.String, Role: nodes.RoleTopic, Doc: "Topic for messages that fail; <name>.dlq by default."},
	{Name: "max_body", Kind: nodes.Int, Default: 256 << 20, Min: 1, Max: 1 << 40, Doc: "Largest object body loaded into memory, in bytes."},
	// steps and branches are decoded by parseSteps.
	{Name: "steps", Kind: nodes.Any, Required: true},
	{Name: "branches", Kind: nodes.Any},
}

// retryFields configure retries, for a flow or one step.
var retryFields = []nodes.Field{
	{Name: "max_attempts", Kind: nodes.Int, Default: 3, Min: 1, Max: 100, Doc: "Attempts in all; 1: no retry."},
	{Name: "backoff", Kind: nodes.Duration, Default: time.Second, Doc: "First wait; doubled after each attempt, ±50% jitter."},
	{Name: "max_backoff", Kind: nodes.Duration, Default: 30 * time.Second, Doc: "Longest wait."},
	{Name: "max_elapsed", Kind: nodes.Duration, Doc: "Stop retrying once this long has passed since the first attempt (0: only max_attempts and the run's timeout bound it)."},
}

// defaultRetry is the retry of a flow without a retry block.
var defaultRetry = Retry{MaxAttempts: 3, Backoff: time.Second, MaxBackoff: 30 * time.Second}

// parseRetry reads a retry block; nil gives def. Fields left out take
// their defaults from retryFields, not from def.
func parseRetry(r *nodes.Config, def Retry) Retry {
	if r == nil {
		return def
	}
	return Retry{MaxAttempts: r.Int("max_attempts"), Backoff: r.Duration("backoff"), MaxBackoff: r.Duration("max_backoff"), MaxElapsed: r.Duration("max_elapsed")}
}

var stepFields = []nodes.Field{
	{Name: "id", Kind: nodes.String},
	{Name: "node", Kind: nodes.String, Required: true},
	{Name: "with", Kind: nodes.Any},
	{Name: "when", Kind: nodes.Condition},
	{Name: "timeout", Kind: nodes.Duration},
	{Name: "retry", Kind: nodes.Object, Fields: retryFields, Doc: "This step's retries, instead of the flow's."},
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
		DeadLetter: c.String("dead_letter"), MaxBody: int64(c.Int("max_body")),
		Branches: map[string][]*Step{},
	}
	if c.Has("name") && !flowNameRE.MatchString(f.Name) {
		probs.Add(c.Pos("name"), "name %q: use 1 to 63 lowercase letters, digits, '.', '_' or '-'", f.Name)
	}
	if f.DeadLetter == "" {
		f.DeadLetter = DeadLetterTopic(f.Name)
	} else if !topicRE.MatchString(f.DeadLetter) {
		probs.Add(c.Pos("dead_letter"), "dead_letter: %q is not a valid topic name (letters, digits and -$:._)", f.DeadLetter)
	}
	f.Retry = parseRetry(c.Object("retry"), defaultRetry)
	if on := c.Object("on"); on != nil {
		f.Trigger = parseTrigger(on, probs)
	}

	var stepsNode, branchesNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "steps":
			stepsNode = root.Content[i+1]
		case "branches":
			branchesNode = root.Content[i+1]
		}
	}
	ids := map[string]bool{}
	if stepsNode != nil {
		f.Steps = l.parseSteps(file, f.Name, "steps", stepsNode, ids, probs)
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
				f.Branches[k.Value] = l.parseSteps(file, f.Name, "branches."+k.Value, v, ids, probs)
			}
		}
	}
	lintRefs(f, probs)
	lintBatch(f, c.Pos("concurrency"), probs)
	return f
}

// lintBatch checks where batching nodes (archive) are: last in the steps
// of a topic-triggered flow without branches or concurrency.
func lintBatch(f *Flow, concurrency nodes.Pos, probs *nodes.Problems) {
	if s, _ := batcher(f); s != nil && f.Concurrency > 1 {
		probs.Add(concurrency, "concurrency: a flow ending in %s writes one batch per partition of its topic at a time; "+
			"for more at once, give the topic more partitions (Kafka)", s.Type)
	}
	for _, s := range allSteps(f) {
		if _, ok := s.Node.(nodes.Batcher); !ok {
			continue
		}
		switch {
		case len(f.Steps) == 0 || s != f.Steps[len(f.Steps)-1]:
			probs.Add(s.Pos, "%s: writes batches, so it must be the flow's last step (not in a branch)", s.where)
		case f.Trigger.Kind != TriggerTopic:
			probs.Add(s.Pos, "%s: batches a topic's messages; trigger the flow with on: {topic: ...}", s.where)
		case len(f.Branches) > 0:
			probs.Add(s.Pos, "%s: a flow that writes batches cannot have branches; route to a topic and batch it in another flow", s.where)
		}
	}
}

// reservedPaths are served by `sluice run` itself.
var reservedPaths = []string{"/healthz", "/readyz", "/metrics", "/hooks", "/runs"}

// cronParser reads schedules: 5 fields, 6 with seconds first, or
// descriptors (@every 10m, @daily).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func parseTrigger(on *nodes.Config, probs *nodes.Problems) Trigger {
	t := Trigger{Pos: on.Pos("")}
	var kinds []string
	for _, k := range []TriggerKind{TriggerTopic, TriggerBucket, TriggerHTTP, TriggerSchedule} {
		if on.Has(string(k)) {
			kinds = append(kinds, string(k))
			t.Kind = k
		}
	}
	if len(kinds) != 1 {
		what := "none"
		if len(kinds) > 1 {
			what = strings.Join(kinds, " and ")
		}
		probs.Add(on.Pos(""), "on: needs exactly one of topic, bucket, http or schedule (got %s)", what)
		return t
	}
	only := map[string]TriggerKind{"group": "", "prefix": TriggerBucket, "suffix": TriggerBucket, "events": TriggerBucket,
		"events_topic": TriggerBucket, "timezone": TriggerSchedule, "catch_up": TriggerSchedule}
	for field, kind := range only {
		if !on.Has(field) {
			continue
		}
		if field == "group" && (t.Kind == TriggerTopic || t.Kind == TriggerBucket) || kind == t.Kind {
			continue
		}
		probs.Add(on.Pos(field), "on: field %q does not apply to %s triggers", field, t.Kind)
	}
	t.Group = on.String("group")
	switch t.Kind {
	case TriggerTopic:
		t.Topic = on.String("topic")
		if !topicRE.MatchString(t.Topic) {
			probs.Add(on.Pos("topic"), "on: topic %q: use letters, digits and -$:._", t.Topic)
		}
	case TriggerBucket:
		t.Bucket, t.Prefix, t.Suffixes, t.Events = on.String("bucket"), on.String("prefix"), on.Strings("suffix"), on.Strings("events")
		t.EventsTopic = on.String("events_topic")
		if t.EventsTopic != "" && !topicRE.MatchString(t.EventsTopic) {
			probs.Add(on.Pos("events_topic"), "on: events_topic %q: use letters, digits and -$:._", t.EventsTopic)
		}
		if err := storage.ValidateBucket(t.Bucket); err != nil {
			probs.Add(on.Pos("bucket"), "on: %v", err)
		}
		for _, e := range t.Events {
			if e != "created" && e != "removed" {
				probs.Add(on.Pos("events"), "on: event %q is not one of created, removed%s", e, nodes.Suggest(e, []string{"created", "removed"}))
			}
		}
	case TriggerHTTP:
		h := on.Object("http")
		t.HTTPPath, t.HTTPMethods, t.HTTPMode = h.String("path"), h.Strings("methods"), h.String("mode")
		t.HTTPKeysEnv, t.HTTPKeyHeader, t.HTTPHeaders = h.String("api_keys_env"), h.String("api_key_header"), h.Strings("headers")
		t.HTTPWait = h.Duration("wait")
		t.HTTPUploads = h.String("uploads")
		t.HTTPRate, t.HTTPBurst, t.HTTPMaxConcurrent = h.Float("rate_limit"), h.Int("burst"), h.Int("max_concurrent")
		t.HTTPHMACEnv, t.HTTPHMACHeader = h.String("hmac_secret_env"), h.String("hmac_header")
		t.HTTPJWTSecretEnv, t.HTTPJWTKeyEnv = h.String("jwt_secret_env"), h.String("jwt_public_key_env")
		t.HTTPJWTIssuer, t.HTTPJWTAudience = h.String("jwt_issuer"), h.String("jwt_audience")
		t.HTTPCORSOrigins, t.HTTPCORSHeaders = h.Strings("cors_origins"), h.Strings("cors_headers")
		if t.HTTPJWTSecretEnv != "" && t.HTTPJWTKeyEnv != "" {
			probs.Add(h.Pos("jwt_public_key_env"), "on: set jwt_secret_env (HS256) or jwt_public_key_env (RS256), not both")
		}
		for _, r := range reservedPaths {
			if t.HTTPPath == r || strings.HasPrefix(t.HTTPPath, r+"/") {
				probs.Add(h.Pos("path"), "on: http path %q is Sluice's own (%s): pick another", t.HTTPPath, strings.Join(reservedPaths, ", "))
				break
			}
		}
		if h.Has("path") && !strings.HasPrefix(t.HTTPPath, "/") {
			probs.Add(h.Pos("path"), "on: http path %q must start with /", t.HTTPPath)
		}
		for i, m := range t.HTTPMethods {
			t.HTTPMethods[i] = strings.ToUpper(m)
			switch t.HTTPMethods[i] {
			case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS":
			default:
				probs.Add(h.Pos("methods"), "on: %q is not an HTTP method", m)
			}
		}
	case TriggerSchedule:
		t.Cron, t.Timezone, t.CatchUp = on.String("schedule"), on.String("timezone"), on.Bool("catch_up")
		if _, err := cronParser.Parse(t.Cron); err != nil {
			probs.Add(on.Pos("schedule"), "on: schedule %q: %v", t.Cron, err)
		}
		if t.Timezone != "" {
			if _, err := time.LoadLocation(t.Timezone); err != nil {
				probs.Add(on.Pos("timezone"), "on: timezone %q: %v", t.Timezone, err)
			}
		}
	}
	return t
}

func (l Loader) parseSteps(file, flow, path string, n *yaml.Node, ids map[string]bool, probs *nodes.Problems) []*Step {
	if n.Kind != yaml.SequenceNode {
		probs.Add(nodes.PosOf(file, n), "%s: want a list of steps", path)
		return nil
	}
	reg := l.registry()
	var steps []*Step
	for i, sn := range n.Content {
		where := fmt.Sprintf("%s[%d]", path, i)
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
			s.ID = strings.NewReplacer(".", "_", "-", "_").Replace(s.Type)
			for j := 2; ids[s.ID]; j++ {
				s.ID = fmt.Sprintf("%s_%d", strings.NewReplacer(".", "_", "-", "_").Replace(s.Type), j)
			}
		} else if !stepIDRE.MatchString(s.ID) {
			probs.Add(sc.Pos("id"), "%s: id %q: use letters, digits and '_' (so expressions can say steps.%s)", where, s.ID, s.ID)
		} else if ids[s.ID] {
			probs.Add(sc.Pos("id"), "%s: duplicate step id %q", where, s.ID)
		}
		ids[s.ID] = true
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
		if deps.Logger != nil {
			deps.Logger = deps.Logger.With("flow", flow, "step", s.ID, "node", s.Type)
		}
		node, err := spec.New(cfg, deps)
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

// lintRefs checks the values that name branches and topics.
func lintRefs(f *Flow, probs *nodes.Problems) {
	var branchNames []string
	for b := range f.Branches {
		branchNames = append(branchNames, b)
	}
	sort.Strings(branchNames)
	check := func(steps []*Step) {
		for _, s := range steps {
			if s.Config == nil {
				continue
			}
			for _, r := range s.Config.Refs() {
				switch r.Role {
				case nodes.RoleBranch:
					if _, ok := f.Branches[r.Value]; !ok {
						probs.Add(r.Pos, "%s: unknown branch %q%s", s.where, r.Value, nodes.Suggest(r.Value, branchNames))
					}
				case nodes.RoleTopic:
					if r.Value == "" {
						continue
					}
					if !topicRE.MatchString(r.Value) {
						probs.Add(r.Pos, "%s: %q is not a valid topic name (letters, digits and -$:._)", s.where, r.Value)
					}
					if f.Trigger.Kind == TriggerTopic && r.Value == f.Trigger.Topic {
						probs.Add(r.Pos, "%s: publishes to the flow's own trigger topic %q, an endless loop", s.where, r.Value)
					}
				}
			}
		}
	}
	check(f.Steps)
	for _, b := range branchNames {
		check(f.Branches[b])
	}
	if f.Trigger.Kind == TriggerTopic && f.DeadLetter == f.Trigger.Topic {
		probs.Add(f.Pos, "dead_letter is the flow's own trigger topic %q: failures would loop", f.DeadLetter)
	}
}

// crossCheck finds problems between flows: duplicate names and HTTP routes.
func crossCheck(flows []*Flow) nodes.Problems {
	var probs nodes.Problems
	names := map[string]*Flow{}
	routes := map[string]*Flow{}
	for _, f := range flows {
		if prev, dup := names[f.Name]; dup && f.Name != "" {
			probs.Add(f.Pos, "flow name %q is already used by %s", f.Name, prev.Pos)
		}
		names[f.Name] = f
		if f.Trigger.Kind == TriggerHTTP {
			for _, m := range f.Trigger.HTTPMethods {
				k := m + " " + f.Trigger.HTTPPath
				if prev, dup := routes[k]; dup {
					probs.Add(f.Trigger.Pos, "on: route %s is already served by flow %q (%s)", k, prev.Name, prev.Pos)
				}
				routes[k] = f
			}
		}
	}
	return probs
}
