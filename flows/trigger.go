package flows

import (
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// TriggerKind says what starts a flow's runs.
type TriggerKind string

const (
	TriggerTopic    TriggerKind = "topic"
	TriggerBucket   TriggerKind = "bucket"
	TriggerHTTP     TriggerKind = "http"
	TriggerSchedule TriggerKind = "schedule"
)

// Trigger is a flow's `on:` block, a tagged union: Kind says which one of
// Topic, Bucket, HTTP and Schedule is set; the others are nil.
type Trigger struct {
	Kind TriggerKind
	Pos  nodes.Pos

	Topic    *TopicTrigger
	Bucket   *BucketTrigger
	HTTP     *HTTPTrigger
	Schedule *ScheduleTrigger
}

// TopicTrigger runs a flow for each message of a topic.
type TopicTrigger struct {
	Topic string
	Group string // consumer group; the flow's name when empty
}

// BucketTrigger runs a flow for each object event of a bucket.
type BucketTrigger struct {
	Bucket   string
	Group    string   // consumer group of the bucket's event topic; the flow's name when empty
	Prefix   string   // only keys starting with it
	Suffixes []string // only keys ending with one of them (case-insensitive)
	Events   []string // "created", "removed"
	// EventsTopic carries the bucket's notifications as S3/MinIO/COS
	// records (MinIO's Kafka target), read besides the storage's watcher.
	EventsTopic string
}

// HTTPTrigger runs a flow for each request on a route of the listener.
type HTTPTrigger struct {
	Path      string // the route, with {param} parts
	Methods   []string
	Mode      string        // sync, async, auto
	Wait      time.Duration // auto: wait this long for the result
	KeysEnv   string        // env var holding the accepted API keys
	KeyHeader string        // header carrying the API key
	Headers   []string      // request headers exposed to expressions
	// Rate (requests/s, with Burst) and MaxConcurrent limit a route; 0:
	// unlimited.
	Rate          float64
	Burst         int
	MaxConcurrent int
	Uploads       string // bucket for multipart uploads
	MaxBody       int64  // largest request body; 0 until the flow's default is applied
	// Authentication and CORS (secrets come from the named environment
	// variables).
	HMACEnv, HMACHeader      string
	HMACTimestampHeader      string        // signed with the body, when set
	HMACTolerance            time.Duration // how far that time may be from now
	JWTSecretEnv, JWTKeyEnv  string
	JWTIssuer, JWTAudience   string
	CORSOrigins, CORSHeaders []string
}

// ScheduleTrigger runs a flow on a cron schedule.
type ScheduleTrigger struct {
	Cron     string // 5 fields, 6 with seconds, or @every/@daily…
	Timezone string // IANA name; UTC when empty
	// CatchUp runs a tick missed while Sluice was stopped once on start
	// (the latest one, for a flow that has run before).
	CatchUp bool
}

// Group is the consumer group the flow reads its trigger topic as: on.group,
// or the flow's name.
func (f *Flow) Group() string {
	switch {
	case f.Trigger.Topic != nil && f.Trigger.Topic.Group != "":
		return f.Trigger.Topic.Group
	case f.Trigger.Bucket != nil && f.Trigger.Bucket.Group != "":
		return f.Trigger.Bucket.Group
	}
	return f.Name
}

// InputTopic is the topic the flow's runs are consumed from: the trigger's
// topic, or the internal topic its bucket events, HTTP requests (async and
// auto modes) or schedule ticks are published to.
func (f *Flow) InputTopic() string {
	switch f.Trigger.Kind {
	case TriggerBucket:
		return BucketTopic(f.Trigger.Bucket.Bucket)
	case TriggerSchedule:
		return ScheduleTopic(f.Name)
	case TriggerHTTP:
		return HTTPTopic(f.Name)
	case TriggerTopic:
		return f.Trigger.Topic.Topic
	}
	return ""
}

// label names the trigger for run records: "topic:orders", "bucket:uploads".
func (t Trigger) label() string {
	var name string
	switch t.Kind {
	case TriggerTopic:
		name = t.Topic.Topic
	case TriggerBucket:
		name = t.Bucket.Bucket
	case TriggerHTTP:
		name = t.HTTP.Path
	case TriggerSchedule:
		name = t.Schedule.Cron
	}
	return string(t.Kind) + ":" + name
}

// Fields of each trigger kind. A field of another kind is reported as not
// applying to this one.
var (
	groupField        = nodes.Field{Name: "group", Kind: nodes.String, Doc: "Consumer group; the flow's name by default. Flows in one group share the messages."}
	topicTriggerField = []nodes.Field{
		{Name: "topic", Kind: nodes.String, Doc: "Run for each message on this topic."},
		groupField,
	}
	bucketTriggerFields = []nodes.Field{
		{Name: "bucket", Kind: nodes.String, Doc: "Run for each object event of this bucket."},
		groupField,
		{Name: "prefix", Kind: nodes.String, Doc: "Bucket triggers: only keys starting with this."},
		{Name: "suffix", Kind: nodes.StringList, Doc: "Bucket triggers: only keys ending with one of these (case-insensitive)."},
		{Name: "events", Kind: nodes.StringList, Default: []string{"created"}, Doc: "Bucket triggers: created, removed."},
		{Name: "events_topic", Kind: nodes.String, Doc: "Bucket triggers: also read the bucket's notifications (S3, MinIO or COS records) from this topic, e.g. where MinIO's Kafka target writes them."},
	}
	httpTriggerFields = []nodes.Field{
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
			{Name: "hmac_timestamp_header", Kind: nodes.String, Doc: "Header carrying the request's Unix time (seconds), signed with the body: the signature is then of \"<timestamp>.<body>\" and a request older or newer than hmac_tolerance is refused, so a captured request cannot be replayed later (as Stripe and Slack sign webhooks)."},
			{Name: "hmac_tolerance", Kind: nodes.Duration, Default: 5 * time.Minute, Doc: "With hmac_timestamp_header: how far a request's time may be from now."},
			{Name: "jwt_secret_env", Kind: nodes.String, Doc: "Require a bearer JWT signed with HS256 by the secret in this environment variable; its claims are request.claims."},
			{Name: "jwt_public_key_env", Kind: nodes.String, Doc: "Require a bearer JWT signed with RS256 by the PEM public key in this environment variable."},
			{Name: "jwt_issuer", Kind: nodes.String, Doc: "Required JWT issuer (iss)."},
			{Name: "jwt_audience", Kind: nodes.String, Doc: "Required JWT audience (aud)."},
			{Name: "cors_origins", Kind: nodes.StringList, Doc: "Origins browsers may call this route from (\"*\" for any); preflight requests are answered."},
			{Name: "cors_headers", Kind: nodes.StringList, Doc: "Request headers cross-origin callers may send."},
			{Name: "uploads", Kind: nodes.String, Role: nodes.RoleBucket, Doc: "Accept multipart/form-data: files go to this bucket as <run id>/<file name> (the first one is the run's object, for image steps), other fields into the payload; request.files lists them."},
			{Name: "rate_limit", Kind: nodes.Float, Min: 0, Max: 1e9, Doc: "Requests per second accepted on this route (token bucket); more get 429 with Retry-After. 0: no limit."},
			{Name: "burst", Kind: nodes.Int, Default: 1, Min: 1, Max: 1 << 20, Doc: "Requests above the rate accepted at once."},
			{Name: "max_body", Kind: nodes.Int, Min: 1, Max: 1 << 40, Doc: "Largest request body accepted, in bytes (413 beyond); the flow's max_body when that is set, else 10 MiB. Raise it for uploads."},
			{Name: "max_concurrent", Kind: nodes.Int, Min: 0, Max: 1 << 20, Doc: "Requests handled at once on this route; more get 429. 0: no limit."},
		}},
	}
	scheduleTriggerFields = []nodes.Field{
		{Name: "schedule", Kind: nodes.String, Doc: "Run on a cron schedule (5 fields, or 6 with seconds)."},
		{Name: "timezone", Kind: nodes.String, Doc: "Schedule triggers: IANA time zone; UTC by default."},
		{Name: "catch_up", Kind: nodes.Bool, Default: true, Doc: "Schedule triggers: on start, run the latest tick missed while stopped, once."},
	}
	triggerKinds = []struct {
		kind   TriggerKind
		fields []nodes.Field
		parse  func(t *Trigger, on *nodes.Config, probs *nodes.Problems)
	}{
		{TriggerTopic, topicTriggerField, parseTopicTrigger},
		{TriggerBucket, bucketTriggerFields, parseBucketTrigger},
		{TriggerHTTP, httpTriggerFields, parseHTTPTrigger},
		{TriggerSchedule, scheduleTriggerFields, parseScheduleTrigger},
	}
	// triggerFields are every kind's fields, for the JSON schema.
	triggerFields = func() []nodes.Field {
		var out []nodes.Field
		seen := map[string]bool{}
		for _, k := range triggerKinds {
			for _, f := range k.fields {
				if !seen[f.Name] {
					seen[f.Name] = true
					out = append(out, f)
				}
			}
		}
		return out
	}()
)

// parseTrigger decodes an `on:` mapping: the key naming a kind (topic,
// bucket, http, schedule) picks the kind, whose own fields are decoded; a
// field of another kind does not apply.
func parseTrigger(file string, on *yaml.Node, probs *nodes.Problems) Trigger {
	t := Trigger{Pos: nodes.PosOf(file, on)}
	if on.Kind == yaml.AliasNode {
		on = on.Alias
	}
	if on.Kind != yaml.MappingNode {
		probs.Add(t.Pos, "on: want a mapping with one of topic, bucket, http or schedule, got %s", describeNode(on))
		return t
	}
	var kinds []string
	k := -1
	for i, tk := range triggerKinds {
		for j := 0; j+1 < len(on.Content); j += 2 {
			if on.Content[j].Value == string(tk.kind) {
				kinds = append(kinds, string(tk.kind))
				k = i
			}
		}
	}
	if len(kinds) != 1 {
		what := "none"
		if len(kinds) > 1 {
			what = strings.Join(kinds, " and ")
		}
		probs.Add(t.Pos, "on: needs exactly one of topic, bucket, http or schedule (got %s)", what)
		return t
	}
	kind := triggerKinds[k]
	t.Kind = kind.kind
	own := map[string]bool{}
	for _, f := range kind.fields {
		own[f.Name] = true
	}
	other := map[string]bool{}
	for _, f := range triggerFields {
		other[f.Name] = !own[f.Name]
	}
	// Fields of other kinds are named as such; the rest decode against
	// this kind's fields (unknown ones are reported there).
	mine := &yaml.Node{Kind: yaml.MappingNode, Line: on.Line, Column: on.Column}
	for j := 0; j+1 < len(on.Content); j += 2 {
		key := on.Content[j]
		if other[key.Value] {
			probs.Add(nodes.PosOf(file, on.Content[j+1]), "on: field %q does not apply to %s triggers", key.Value, t.Kind)
			continue
		}
		mine.Content = append(mine.Content, key, on.Content[j+1])
	}
	c, ps := nodes.Decode(file, "on", kind.fields, mine, t.Pos)
	*probs = append(*probs, ps...)
	kind.parse(&t, c, probs)
	return t
}

func parseTopicTrigger(t *Trigger, on *nodes.Config, probs *nodes.Problems) {
	t.Topic = &TopicTrigger{Topic: on.String("topic"), Group: on.String("group")}
	if !validTopic(t.Topic.Topic) {
		probs.Add(on.Pos("topic"), "on: topic %q: use letters, digits and -$:._", t.Topic.Topic)
	}
}

func parseBucketTrigger(t *Trigger, on *nodes.Config, probs *nodes.Problems) {
	b := &BucketTrigger{Bucket: on.String("bucket"), Group: on.String("group"), Prefix: on.String("prefix"),
		Suffixes: on.Strings("suffix"), Events: on.Strings("events"), EventsTopic: on.String("events_topic")}
	t.Bucket = b
	if b.EventsTopic != "" && !validTopic(b.EventsTopic) {
		probs.Add(on.Pos("events_topic"), "on: events_topic %q: use letters, digits and -$:._", b.EventsTopic)
	}
	if err := storage.ValidateBucket(b.Bucket); err != nil {
		probs.Add(on.Pos("bucket"), "on: %v", err)
	}
	for _, e := range b.Events {
		if e != "created" && e != "removed" {
			probs.Add(on.Pos("events"), "on: event %q is not one of created, removed%s", e, nodes.Suggest(e, []string{"created", "removed"}))
		}
	}
}

// reservedPaths are served by `sluice run` itself.
var reservedPaths = []string{"/healthz", "/readyz", "/metrics", "/hooks", "/runs"}

func parseHTTPTrigger(t *Trigger, on *nodes.Config, probs *nodes.Problems) {
	h := on.Object("http")
	if h == nil {
		t.HTTP = &HTTPTrigger{}
		return
	}
	ht := &HTTPTrigger{
		Path: h.String("path"), Methods: h.Strings("methods"), Mode: h.String("mode"), Wait: h.Duration("wait"),
		KeysEnv: h.String("api_keys_env"), KeyHeader: h.String("api_key_header"), Headers: h.Strings("headers"),
		Uploads: h.String("uploads"), MaxBody: int64(h.Int("max_body")), Rate: h.Float("rate_limit"), Burst: h.Int("burst"), MaxConcurrent: h.Int("max_concurrent"),
		HMACEnv: h.String("hmac_secret_env"), HMACHeader: h.String("hmac_header"),
		HMACTimestampHeader: h.String("hmac_timestamp_header"), HMACTolerance: h.Duration("hmac_tolerance"),
		JWTSecretEnv: h.String("jwt_secret_env"), JWTKeyEnv: h.String("jwt_public_key_env"),
		JWTIssuer: h.String("jwt_issuer"), JWTAudience: h.String("jwt_audience"),
		CORSOrigins: h.Strings("cors_origins"), CORSHeaders: h.Strings("cors_headers"),
	}
	t.HTTP = ht
	if ht.JWTSecretEnv != "" && ht.JWTKeyEnv != "" {
		probs.Add(h.Pos("jwt_public_key_env"), "on: set jwt_secret_env (HS256) or jwt_public_key_env (RS256), not both")
	}
	for _, r := range reservedPaths {
		if ht.Path == r || strings.HasPrefix(ht.Path, r+"/") {
			probs.Add(h.Pos("path"), "on: http path %q is Sluice's own (%s): pick another", ht.Path, strings.Join(reservedPaths, ", "))
			break
		}
	}
	if h.Has("path") && !strings.HasPrefix(ht.Path, "/") {
		probs.Add(h.Pos("path"), "on: http path %q must start with /", ht.Path)
	}
	for i, m := range ht.Methods {
		ht.Methods[i] = strings.ToUpper(m)
		switch ht.Methods[i] {
		case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS":
		default:
			probs.Add(h.Pos("methods"), "on: %q is not an HTTP method", m)
		}
	}
}

// cronParser reads schedules: 5 fields, 6 with seconds first, or
// descriptors (@every 10m, @daily).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func parseScheduleTrigger(t *Trigger, on *nodes.Config, probs *nodes.Problems) {
	s := &ScheduleTrigger{Cron: on.String("schedule"), Timezone: on.String("timezone"), CatchUp: on.Bool("catch_up")}
	t.Schedule = s
	if _, err := cronParser.Parse(s.Cron); err != nil {
		probs.Add(on.Pos("schedule"), "on: schedule %q: %v", s.Cron, err)
	}
	if s.Timezone != "" {
		if _, err := time.LoadLocation(s.Timezone); err != nil {
			probs.Add(on.Pos("timezone"), "on: timezone %q: %v", s.Timezone, err)
		}
	}
}

// describeNode names a YAML node's kind for messages.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	}
	return "nothing"
}
