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
	Record      string // RecordAll or RecordFailures: which runs leave a run record
	spec        string // hash of the flow's YAML, variables resolved (Engine.Reload)
}

// The values of a flow's record setting.
const (
	RecordAll      = "all"      // every run leaves a record (the default)
	RecordFailures = "failures" // only runs that failed, and runs with metered calls
)

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
