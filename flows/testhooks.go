package flows

import (
	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/state"
)

// RunEnd is what Options.OnRunEnd sees of a run once it has ended: its
// record, and the variables its expressions saw at the end. sluice test
// (package flowtest) waits on it to know that a run has settled.
type RunEnd struct {
	// Run is the run's record, as written to the state database. An
	// input the trigger filtered out has the status StatusFiltered and
	// no input identity.
	Run state.Run
	// Vars are the envelope's variables at the end of the run: payload,
	// meta, steps (each step's result), object, request, event, flow and
	// run. They are empty when a step's abandoned call may still be using
	// the envelope.
	Vars eval.Vars
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
		end.Vars = d.env.Vars()
	}
	fn(end)
}
