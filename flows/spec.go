package flows

import (
	"github.com/sluicehq/sluice/brokers"
	"regexp"
	"time"

	"github.com/sluicehq/sluice/nodes"
)

// The flow language: the fields of a flow file, its steps and retries.
// Trigger fields are in trigger.go, with the trigger kinds. The linter,
// `sluice schema` and the docs are generated from these.

// validTopic reports whether every broker can carry the topic name.
func validTopic(topic string) bool { return brokers.ValidateTopic(topic) == nil }

var (
	flowNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	stepIDRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

var flowFields = []nodes.Field{
	{Name: "name", Kind: nodes.String, Required: true, Doc: "Unique name: lowercase letters, digits, '.', '_', '-'."},
	{Name: "description", Kind: nodes.String},
	{Name: "on", Kind: nodes.Any, Required: true, Doc: "The trigger: one of topic, bucket, http, schedule, with its fields."},
	{Name: "concurrency", Kind: nodes.Int, Default: 1, Min: 1, Max: 1024, Doc: "Runs at once. Topic flows: 1 by default (messages of one partition key stay in order at any concurrency); bucket and HTTP flows: the number of CPUs by default."},
	{Name: "timeout", Kind: nodes.Duration, Default: 5 * time.Minute, Doc: "Bound on one run."},
	{Name: "retry", Kind: nodes.Object, Doc: "How failing steps are retried (a step's own retry overrides it).", Fields: retryFields},
	{Name: "dead_letter", Kind: nodes.String, Role: nodes.RoleTopic, Doc: "Topic for messages that fail; <name>.dlq by default."},
	{Name: "max_body", Kind: nodes.Int, Default: 256 << 20, Min: 1, Max: 1 << 40, Doc: "Largest object body loaded into memory, in bytes."},
	{Name: "record", Kind: nodes.Enum, Default: RecordAll, Options: []string{RecordAll, RecordFailures},
		Doc: "Which runs leave a run record: all, or failures (a run that succeeded, or a duplicate, leaves only its input's completion in the ledger, and its metrics; runs with metered calls are always recorded). Not for HTTP flows, whose answers are read from their records."},
	// steps and branches are decoded by parseSteps.
	{Name: "steps", Kind: nodes.Any, Required: true},
	{Name: "branches", Kind: nodes.Any},
}

// defaultRequestBody bounds an HTTP request's body unless the trigger or
// the flow says otherwise: 10 MiB is plenty for JSON; files belong in
// buckets.
const defaultRequestBody = 10 << 20

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
