package nodes

import "github.com/sluicehq/sluice/storage"

// Delivery is the engine's side of one message's Envelope. Nodes see the
// Envelope: they read the message, set their result, body, image, route,
// response and outputs, and meter their calls. The engine holds the
// Delivery: it names the step that runs, and collects what the steps left
// (outputs to publish, a pending route, the HTTP response, byte counts,
// metered calls and log text). A node is never handed a Delivery, so these
// operations are out of its reach.
//
// Like the Envelope, a Delivery is used by one goroutine at a time.
type Delivery struct{ env *Envelope }

// NewDelivery returns a delivery with a new envelope whose body, when a
// step asks for it, is read from store (the envelope's object reference)
// within maxBody bytes (0: no limit).
func NewDelivery(store *storage.Store, maxBody int64) *Delivery {
	return &Delivery{env: NewEnvelope(store, maxBody)}
}

// Envelope returns the envelope nodes are given.
func (d *Delivery) Envelope() *Envelope { return d.env }

// SetStep names the step that runs now: SetResult files its result under
// this id.
func (d *Delivery) SetStep(id string) { d.env.step = id }

// Outputs returns the messages the steps emitted, in order, to publish
// once every step has succeeded.
func (d *Delivery) Outputs() []Output { return d.env.outputs }

// TakeWrites returns and clears the objects (bucket/key) written since
// it was last called.
func (d *Delivery) TakeWrites() []string {
	w := d.env.wrote
	d.env.wrote = nil
	return w
}

// TakeRoute returns and clears the route a switch step set.
func (d *Delivery) TakeRoute() (Route, bool) {
	e := d.env
	if e.route == nil {
		return Route{}, false
	}
	r := *e.route
	e.route = nil
	return r, true
}

// Response returns the HTTP response a step set, if any.
func (d *Delivery) Response() (Response, bool) {
	if d.env.response == nil {
		return Response{}, false
	}
	return *d.env.response, true
}

// Bytes returns the bytes the run read and wrote: the triggering object's
// body when a step loaded it, plus what nodes counted with CountRead and
// CountWritten.
func (d *Delivery) Bytes() (read, written int64) { return d.env.bytesIn, d.env.bytesOut }

// TakeCalls returns and clears the calls metered since the last TakeCalls;
// the engine takes them after each step attempt.
func (d *Delivery) TakeCalls() []Call {
	c := d.env.calls
	d.env.calls = nil
	return c
}

// TakeLog returns and clears the text SetLog kept.
func (d *Delivery) TakeLog() string {
	s := d.env.log
	d.env.log = ""
	return s
}

// SetAttempt says which attempt of the current step runs now, counting
// from 1 (the engine calls it before each attempt; nodes read Attempt).
func (d *Delivery) SetAttempt(n int) { d.env.attempt = n }
