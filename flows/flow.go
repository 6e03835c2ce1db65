// Package flows is the flow language and its runtime: it loads flow files
// (YAML), lints them against the node specs (every problem at once, each at
// file:line:col), compiles each flow to a Watermill handler, and runs them.
package flows

import (
	"time"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
)

// Flow is a validated flow: a trigger and a chain of steps.
type Flow struct {
	Name        string
	Description string
	File        string
	Pos         nodes.Pos // of the name
	Trigger     Trigger
	Steps       []*Step
	Branches    map[string][]*Step
	Concurrency int
	Timeout     time.Duration // per run
	Retry       Retry
	DeadLetter  string // topic
	MaxBody     int64  // bytes of an object body loaded into memory

	triggerLabel string // "topic:orders", for run records
}

// TriggerKind says what starts a flow's runs.
type TriggerKind string

const (
	TriggerTopic    TriggerKind = "topic"
	TriggerBucket   TriggerKind = "bucket"
	TriggerHTTP     TriggerKind = "http"
	TriggerSchedule TriggerKind = "schedule"
)

// Trigger is a flow's `on:` block.
type Trigger struct {
	Kind TriggerKind
	Pos  nodes.Pos

	Topic string // topic triggers
	Group string // consumer group; the flow's name by default

	Bucket   string   // bucket triggers
	Prefix   string   // only keys starting with it
	Suffixes []string // only keys ending with one of them (case-insensitive)
	Events   []string // "created", "removed"
	// EventsTopic carries the bucket's notifications as S3/MinIO/COS
	// records (MinIO's Kafka target), read besides the storage's watcher.
	EventsTopic string

	HTTPPath      string // http triggers: the route, with {param} parts
	HTTPMethods   []string
	HTTPMode      string        // sync, async, auto
	HTTPWait      time.Duration // auto: wait this long for the result
	HTTPKeysEnv   string        // env var holding the accepted API keys
	HTTPKeyHeader string        // header carrying the API key
	HTTPHeaders   []string      // request headers exposed to expressions
	// HTTPRate (requests/s, with HTTPBurst) and HTTPMaxConcurrent limit a
	// route; 0: unlimited.
	HTTPRate          float64
	HTTPBurst         int
	HTTPMaxConcurrent int
	HTTPUploads       string // bucket for multipart uploads
	// Authentication and CORS of http triggers (secrets come from the
	// named environment variables).
	HTTPHMACEnv, HTTPHMACHeader      string
	HTTPJWTSecretEnv, HTTPJWTKeyEnv  string
	HTTPJWTIssuer, HTTPJWTAudience   string
	HTTPCORSOrigins, HTTPCORSHeaders []string

	Cron     string // schedule triggers: 5 fields, 6 with seconds, or @every/@daily…
	Timezone string // IANA name; UTC when empty
	// CatchUp runs a tick missed while Sluice was stopped once on start
	// (the latest one, for a flow that has run before).
	CatchUp bool
}

// Retry bounds how a failing step is retried before the message is
// dead-lettered.
type Retry struct {
	MaxAttempts int           // 1 means no retry
	Backoff     time.Duration // first wait, doubled each time, with jitter
	MaxBackoff  time.Duration
	MaxElapsed  time.Duration // 0: unbounded (the run's timeout still applies)
}

// Step is one node in the chain.
type Step struct {
	ID      string
	Type    string
	Pos     nodes.Pos
	When    *eval.Program // nil: always
	Timeout time.Duration // 0: the run's
	Retry   *Retry        // nil: the flow's
	Config  *nodes.Config
	Node    nodes.Node
	where   string // "steps[2] (image.thumbnail)", for messages
}

// BucketTopic is the internal topic a bucket's object events are published
// to; bucket-triggered flows subscribe to it.
func BucketTopic(bucket string) string { return "sluice.bucket." + bucket }

// HTTPTopic is the internal topic an async or auto HTTP flow's requests
// are queued on.
func HTTPTopic(flow string) string { return "sluice.http." + flow }

// ScheduleTopic is the internal topic a schedule-triggered flow's ticks
// are published to.
func ScheduleTopic(flow string) string { return "sluice.schedule." + flow }

// DeadLetterTopic is the default dead-letter topic of a flow.
func DeadLetterTopic(flow string) string { return flow + ".dlq" }
