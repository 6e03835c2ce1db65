// Package statemachine holds state.transition: durable per-entity state
// machines declared in the flow (package machines stores them).
package statemachine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/nodes"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "state.transition",
		Summary: "Move an entity (an order, a shipment…) through a state machine declared here; invalid events fail with the reason.",
		Description: "The entity is named by key, the event by event (both expressions over the message). The " +
			"entity's current state, version and every transition are stored durably (default: machines.db in " +
			"the Sluice home). A transition applies only from the version it was decided on: two events for one " +
			"entity handled at once never both apply from the same state (the loser re-reads and decides again). " +
			"An event not allowed in the entity's state, a guard that says no, or any event for an entity in a " +
			"terminal state is a permanent error naming the entity, its state and the event: the message goes " +
			"to the dead-letter topic. A redelivered message does not apply twice. The result (steps.<id>) holds " +
			"machine, key, event, from, to, version and applied, for switch and publish to route on. " +
			"With --state postgres://… the machines live in that database, shared by every process. " +
			"timeouts declare durable timers: when an entity enters a state with a timeout and is still in it " +
			"(at the same version) after the duration, the timeout's event is published, once across all " +
			"processes, to the topic of the message that moved it there, as message timer:MACHINE:KEY:VERSION:EVENT " +
			"with payload {machine, key, event, state, version, timer: true} (plus the key and event under their " +
			"field names when key and event are payload.FIELD); it runs through the flow like any " +
			"message (ledger, dead letters, history). A timer whose entity has moved on by the time its message " +
			"is processed changes nothing: the result says applied false, stale true, and the run ends there " +
			"(succeeded; later steps do not run, so a flow never routes on a state the timer did not cause).",
		Fields: []nodes.Field{
			{Name: "machine", Kind: nodes.String, Required: true, Doc: "Machine name: a namespace for its entities."},
			{Name: "key", Kind: nodes.Expr, Required: true, Doc: "The entity's key, e.g. payload.order_id."},
			{Name: "event", Kind: nodes.Expr, Required: true, Doc: "The event's name, e.g. payload.type."},
			{Name: "initial", Kind: nodes.String, Default: "new", Doc: "State of an entity before its first event."},
			{Name: "terminal", Kind: nodes.StringList, Doc: "States no event leaves."},
			{Name: "transitions", Kind: nodes.List, Required: true, Doc: "Allowed transitions; the first whose event, from and guard match applies.", Fields: []nodes.Field{
				{Name: "event", Kind: nodes.String, Required: true},
				{Name: "from", Kind: nodes.StringList, Required: true, Doc: "States the event may come in; \"*\": any non-terminal state."},
				{Name: "to", Kind: nodes.String, Required: true},
				{Name: "guard", Kind: nodes.Condition, Doc: "Only when this holds, e.g. payload.amount > 0."},
			}},
			{Name: "timeouts", Kind: nodes.List, Doc: "Durable timers: fire event if the entity is still in state after the duration.", Fields: []nodes.Field{
				{Name: "state", Kind: nodes.String, Required: true, Doc: "The state the timer is set on entering."},
				{Name: "after", Kind: nodes.Duration, Required: true, Doc: "How long the entity may stay, e.g. 30m."},
				{Name: "event", Kind: nodes.String, Required: true, Doc: "The event fired; a transition must take it from state."},
			}},
			{Name: "timer_topic", Kind: nodes.String, Doc: "Topic timers publish to when the message that set them came from none (an HTTP sync run)."},
			{Name: "timer_poll", Kind: nodes.Duration, Default: time.Second, Doc: "How often due timers are looked for."},
			{Name: "database", Kind: nodes.String, Doc: "SQLite file (relative paths are inside the Sluice home) or a postgres:// URL. Default: the --state database when it is PostgreSQL, else machines.db in the Sluice home."},
		},
		Examples: []nodes.Example{{Title: "Orders", YAML: `node: state.transition
with:
  machine: order
  key: payload.order_id
  event: payload.type
  terminal: [delivered, cancelled]
  transitions:
    - {event: create, from: [new], to: created}
    - {event: pay, from: [created], to: paid, guard: payload.amount > 0}
    - {event: ship, from: [paid], to: shipped}
    - {event: deliver, from: [shipped], to: delivered}
    - {event: cancel, from: [created, paid], to: cancelled}
    - {event: expire, from: [created], to: cancelled}
  timeouts:
    - {state: created, after: 30m, event: expire}`}},
		New: newTransition,
	})
}

type rule struct {
	event string
	from  []string
	to    string
	guard *eval.Program
}

type timeout struct {
	after time.Duration
	event string
}

type transition struct {
	machine  string
	key, ev  *eval.Program
	initial  string
	terminal map[string]bool
	rules    []rule
	database string // a SQLite path or a postgres:// URL
	store    machines.Store
	// timeouts by state; timer messages go to the setting message's topic,
	// or timerTopic.
	timeouts   map[string][]timeout
	timerTopic string
	poll       time.Duration
	publish    func(ctx context.Context, topic string, msgs ...*message.Message) error
	log        *slog.Logger
	stop       context.CancelFunc
	stopped    chan struct{}
	cache      entityCache
}

func newTransition(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	t := &transition{machine: c.String("machine"), key: c.Expr("key"), ev: c.Expr("event"), initial: c.String("initial"), terminal: map[string]bool{}}
	for _, s := range c.Strings("terminal") {
		t.terminal[s] = true
	}
	if strings.TrimSpace(t.machine) == "" {
		c.Problemf("machine", "name the machine")
	}
	if t.terminal[t.initial] {
		c.Problemf("initial", "the initial state %q is terminal: no event could ever apply", t.initial)
	}
	for _, r := range c.List("transitions") {
		ru := rule{event: r.String("event"), from: r.Strings("from"), to: r.String("to"), guard: r.Expr("guard")}
		for _, f := range ru.from {
			if t.terminal[f] {
				r.Problemf("from", "%q is terminal: no transition leaves it", f)
			}
		}
		t.rules = append(t.rules, ru)
	}
	t.timeouts = map[string][]timeout{}
	for _, tc := range c.List("timeouts") {
		st, to := tc.String("state"), timeout{after: tc.Duration("after"), event: tc.String("event")}
		if t.terminal[st] {
			tc.Problemf("state", "%q is terminal: no timeout can leave it", st)
		}
		if to.after <= 0 {
			tc.Problemf("after", "want a positive duration such as 30m")
		}
		if !t.takes(st, to.event) {
			tc.Problemf("event", "no transition takes event %q from state %q: the timer could never apply", to.event, st)
		}
		t.timeouts[st] = append(t.timeouts[st], to)
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	t.timerTopic, t.poll, t.publish, t.log = c.String("timer_topic"), c.Duration("timer_poll"), d.Publish, d.Logger
	if t.poll <= 0 {
		t.poll = time.Second
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	switch db := c.String("database"); {
	case db == "" && machines.IsPostgresURL(d.State):
		t.database = d.State
	case db == "":
		t.database = filepath.Join(d.StateDir, "machines.db")
	case strings.Contains(db, "://"), filepath.IsAbs(db):
		t.database = db
	default:
		t.database = filepath.Join(d.StateDir, db)
	}
	return t, nil
}

// takes reports whether some transition takes event from state.
func (t *transition) takes(state, event string) bool {
	for _, r := range t.rules {
		if r.event == event && (slices.Contains(r.from, state) || slices.Contains(r.from, "*")) {
			return true
		}
	}
	return false
}

// Start opens the store and, when the machine has timeouts, starts the
// timer poller (stopped by Close).
func (t *transition) Start(ctx context.Context) error {
	s, err := machines.Open(ctx, t.database)
	if err != nil {
		return fmt.Errorf("state.transition: %w", err)
	}
	t.store = s
	if len(t.timeouts) == 0 {
		return nil
	}
	if t.publish == nil {
		return errors.New("state.transition: timeouts need the engine's publisher (nodes.Deps.Publish), and none was given")
	}
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	t.stop, t.stopped = stop, make(chan struct{})
	go t.pollTimers(pctx)
	return nil
}

func (t *transition) Close() error {
	if t.stop != nil {
		t.stop()
		<-t.stopped
	}
	if t.store != nil {
		return t.store.Close()
	}
	return nil
}

// lookup reads the entity and the transition input caused for it, if
// any (in one round trip where the store can). The error is the entity's
// read (ErrNotFound for a new one).
func (t *transition) lookup(ctx context.Context, key, input string) (machines.Entity, *machines.Transition, error) {
	if lk, ok := t.store.(machines.Looker); ok {
		return lk.Lookup(ctx, t.machine, key, input)
	}
	if input != "" {
		tr, ok, err := t.store.ByInput(ctx, t.machine, key, input)
		if err != nil {
			return machines.Entity{}, nil, err
		}
		if ok {
			return machines.Entity{}, &tr, nil
		}
	}
	e, err := t.store.Get(ctx, t.machine, key)
	return e, nil, err
}

// maxConflicts bounds how often one event re-reads its entity after
// losing a race to a concurrent event.
const maxConflicts = 20

func (t *transition) Process(ctx context.Context, env *nodes.Envelope) error {
	vars := env.Vars()
	tm, isTimer, err := t.timerOf(env)
	if err != nil {
		return err
	}
	var key, event string
	if isTimer {
		key, event = tm.Key, tm.Event
	} else {
		if key, err = str(ctx, t.key, vars, "key"); err != nil {
			return err
		}
		if event, err = str(ctx, t.ev, vars, "event"); err != nil {
			return err
		}
	}
	// The entity as this node last left it, if it did (a timer checks
	// its version against the store); else read it, and whether this
	// message applied already.
	e, cached := machines.Entity{}, false
	if !isTimer {
		e, cached = t.cache.get(key)
	}
	if !cached {
		var done bool
		if e, done, err = t.read(ctx, env, key); done || err != nil {
			return err
		}
	}
	for i := 0; i < maxConflicts; i++ {
		if isTimer && e.Version != tm.Version {
			// The entity left the state the timer was set in.
			// Nothing happened, so nothing follows: the run ends here.
			env.SetResult(map[string]any{"machine": t.machine, "key": key, "event": event, "from": e.State, "to": e.State,
				"version": e.Version, "applied": false, "stale": true})
			env.SetRoute(nodes.Route{End: true})
			return nil
		}
		r, err := t.decide(ctx, e, event, vars)
		var timers []machines.Timer
		if err == nil {
			timers, err = t.timersFor(r.to, env)
		}
		if err != nil && cached {
			// Decided on a remembered state: read the entity (a
			// redelivered message, or another process moved it) and
			// decide again.
			cached, i = false, i-1
			var done bool
			if e, done, err = t.read(ctx, env, key); done || err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		after, applied, err := t.store.Apply(ctx, t.machine, key, e.Version,
			machines.Transition{Event: event, From: e.State, To: r.to, Input: env.Event.ID, Timers: timers})
		if errors.Is(err, machines.ErrConflict) {
			cached = false
			var done bool
			if e, done, err = t.read(ctx, env, key); done || err != nil {
				return err
			}
			continue
		}
		if err != nil {
			t.cache.drop(key)
			return err
		}
		t.cache.put(after)
		if !applied {
			// This message applied already (a redelivery the entity's
			// read did not show, e.g. decided on a remembered state).
			tr, ok, err := t.store.ByInput(ctx, t.machine, key, env.Event.ID)
			if err != nil {
				return err
			}
			if ok {
				t.repeated(env, key, &tr)
				return nil
			}
		}
		env.SetResult(map[string]any{"machine": t.machine, "key": key, "event": event, "from": e.State, "to": after.State,
			"version": after.Version, "applied": applied})
		return nil
	}
	return fmt.Errorf("%s %s: %d concurrent changes in a row; giving up for now", t.machine, key, maxConflicts)
}

// read reads the entity (the initial state for one never seen) and
// whether env's message applied already; done when it did (its result is
// then set: that transition, applied false).
func (t *transition) read(ctx context.Context, env *nodes.Envelope, key string) (e machines.Entity, done bool, err error) {
	e, tr, err := t.lookup(ctx, key, env.Event.ID)
	if tr != nil {
		t.repeated(env, key, tr)
		return e, true, nil
	}
	if errors.Is(err, machines.ErrNotFound) {
		e.State, e.Version = t.initial, 0
		return e, false, nil
	}
	return e, false, err
}

// repeated reports the transition env's message caused when first
// delivered (the entity may have moved on since): nothing changes.
func (t *transition) repeated(env *nodes.Envelope, key string, tr *machines.Transition) {
	env.SetResult(map[string]any{"machine": t.machine, "key": key, "event": tr.Event, "from": tr.From, "to": tr.To,
		"version": tr.Version, "applied": false})
}

// decide picks the rule for event in the entity's state, or explains why
// there is none (a permanent error: the message cannot apply, ever).
func (t *transition) decide(ctx context.Context, e machines.Entity, event string, vars eval.Vars) (rule, error) {
	if t.terminal[e.State] {
		return rule{}, nodes.Permanent(fmt.Errorf("%s %s is %s, a terminal state: event %q not applied", t.machine, e.Key, e.State, event))
	}
	var allowed []string
	matched := false
	for _, r := range t.rules {
		if !slices.Contains(r.from, e.State) && !slices.Contains(r.from, "*") {
			continue
		}
		allowed = append(allowed, r.event)
		if r.event != event {
			continue
		}
		matched = true
		if r.guard != nil {
			ok, err := r.guard.BoolContext(ctx, vars)
			if err != nil {
				return rule{}, nodes.ExprError(fmt.Errorf("%s %s: guard of %s: %w", t.machine, e.Key, event, err))
			}
			if !ok {
				continue
			}
		}
		return r, nil
	}
	if matched {
		return rule{}, nodes.Permanent(fmt.Errorf("%s %s in state %s: event %q rejected by its guard", t.machine, e.Key, e.State, event))
	}
	sort.Strings(allowed)
	allowed = slices.Compact(allowed)
	return rule{}, nodes.Permanent(fmt.Errorf("%s %s is %s: event %q is not allowed there (allowed: %s)",
		t.machine, e.Key, e.State, event, orNone(allowed)))
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// str evaluates p to a non-empty string (numbers are formatted). Other
// values (objects, lists, booleans) are refused: formatted, different
// values could name the same entity.
func str(ctx context.Context, p *eval.Program, vars eval.Vars, what string) (string, error) {
	v, err := p.EvalContext(ctx, vars)
	if err != nil {
		return "", nodes.ExprError(fmt.Errorf("%s: %w", what, err))
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case nil:
	case float64, float32, int, int64, int32, uint, uint64, uint32:
		s = fmt.Sprint(x)
	default:
		return "", nodes.Permanent(fmt.Errorf("%s %q is %s, not a string or a number", what, p.Source(), kindOf(x)))
	}
	if s == "" {
		return "", nodes.Permanent(fmt.Errorf("%s %q is empty or missing", what, p.Source()))
	}
	return s, nil
}

var (
	_ nodes.Node    = (*transition)(nil)
	_ nodes.Starter = (*transition)(nil)
	_ nodes.Closer  = (*transition)(nil)
)

// kindOf names a value's JSON kind for messages.
func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("a %T", v)
}
