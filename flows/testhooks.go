package flows

import "github.com/sluicehq/sluice/state"

// RunEnd is what Options.OnRunEnd sees of a run once it has ended: its
// record, and what its steps left on the envelope. sluice test (package
// flowtest) waits on it to know that a run has settled.
type RunEnd struct {
	// Run is the run's record, as written to the state database. A run
	// the trigger filtered out has the status "filtered" and no input.
	Run state.Run
	// Payload, Meta and Steps are the envelope's at the end of the run
	// (Steps: each step's result by step id). They are nil when a step's
	// abandoned call may still be using the envelope.
	Payload any
	Meta    map[string]string
	Steps   map[string]any
}

// StatusFiltered is RunEnd's status of an input the trigger filtered out.
const StatusFiltered = "filtered"

// observe hands a settled run to Options.OnRunEnd, when set. It is called
// once per run, after its outputs are published and its completion is
// committed (so its outputs and dead letter are published), from the
// goroutine that settled it.
func (r *runner) observe(d *delivery) {
	fn := r.e.opts.OnRunEnd
	if fn == nil {
		return
	}
	end := RunEnd{Run: d.run}
	if d.skip {
		end.Run.Status = StatusFiltered
	}
	if !d.unsafe && d.env != nil {
		end.Payload, end.Meta, end.Steps = d.env.Payload, d.env.Meta, d.env.Steps
	}
	fn(end)
}
