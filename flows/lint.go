package flows

import (
	"sort"

	"github.com/sluicehq/sluice/nodes"
)

// Lints: checks of a parsed flow beyond its fields' own (references to
// branches and topics, where batching steps may be), and between flows.

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
					if !validTopic(r.Value) {
						probs.Add(r.Pos, "%s: %q is not a valid topic name (letters, digits and -$:._)", s.where, r.Value)
					}
					if f.Trigger.Topic != nil && r.Value == f.Trigger.Topic.Topic {
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
	if f.Trigger.Topic != nil && f.DeadLetter == f.Trigger.Topic.Topic {
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
		if h := f.Trigger.HTTP; h != nil {
			for _, m := range h.Methods {
				k := m + " " + h.Path
				if prev, dup := routes[k]; dup {
					probs.Add(f.Trigger.Pos, "on: route %s is already served by flow %q (%s)", k, prev.Name, prev.Pos)
				}
				routes[k] = f
			}
		}
	}
	return probs
}
