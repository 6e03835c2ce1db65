package nodes

import "time"

// Call is one metered call a node made while processing a message: a
// user function invoked, a model run. The engine keeps a step's calls in
// the run record (`sluice runs show`) and sums them per flow, kind and
// name per day (`sluice usage`), the way a serverless bill does.
type Call struct {
	Kind      string        `json:"kind"` // "function", "model"
	Name      string        `json:"name"` // the function's or model's name
	Duration  time.Duration `json:"duration_ns"`
	ColdStart bool          `json:"cold_start,omitempty"` // a worker or instance had to be started for it
	BytesIn   int64         `json:"bytes_in,omitempty"`   // size of what the call was given
	Error     string        `json:"error,omitempty"`
}

// Meter records a call made by the current step. Nodes call it once per
// call, failed calls included.
func (e *Envelope) Meter(c Call) { e.calls = append(e.calls, c) }

// SetLog keeps diagnostic text about the current step (a function's
// stderr tail) for the run record; the last call wins. The engine takes
// it after each step attempt.
func (e *Envelope) SetLog(s string) { e.log = s }
