package flows

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/robfig/cron/v3"

	"github.com/sluicehq/sluice/state"
)

// Tick is the payload of a schedule trigger's message.
type Tick struct {
	Time     time.Time `json:"time"`     // the scheduled time
	Schedule string    `json:"schedule"` // the flow's cron expression
	Missed   bool      `json:"missed"`   // a tick caught up on start
}

// schedule publishes the flow's ticks to its schedule topic until ctx
// ends. A tick's message id derives from the flow and the scheduled time:
// several sluice processes running the flow publish the same id, and the
// completion ledger runs it once.
func (r *runner) schedule(ctx context.Context) {
	st := r.f.Trigger.Schedule
	log := r.log.With("schedule", st.Cron)
	loc := time.UTC
	if st.Timezone != "" {
		l, err := time.LoadLocation(st.Timezone)
		if err != nil { // validated at load; the zone database changed since
			log.Error("schedule not started", "error", err)
			return
		}
		loc = l
	}
	sched, err := cronParser.Parse(st.Cron)
	if err != nil {
		log.Error("schedule not started", "error", err)
		return
	}
	now := time.Now().In(loc)
	if st.CatchUp {
		if missed, ok := r.missedTick(ctx, sched, now); ok {
			log.Info("running a tick missed while stopped", "time", missed)
			r.publishTick(ctx, Tick{Time: missed, Schedule: st.Cron, Missed: true})
		}
	}
	next := sched.Next(now)
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		r.publishTick(ctx, Tick{Time: next, Schedule: st.Cron})
		next = sched.Next(next)
	}
}

// missedTick finds the latest scheduled time after the flow's last run
// and before now, if any; a flow that never ran has missed nothing.
func (r *runner) missedTick(ctx context.Context, sched cron.Schedule, now time.Time) (time.Time, bool) {
	if r.e.opts.State == nil {
		return time.Time{}, false
	}
	runs, err := r.e.opts.State.Runs(ctx, state.Filter{Flow: r.f.Name, Limit: 1})
	if err != nil || len(runs) == 0 {
		return time.Time{}, false
	}
	return latestTick(sched, runs[0].Started.In(now.Location()), now)
}

// latestTick is the last scheduled time in (after, now]. cron schedules
// only step forward, so it looks back from now over a window doubling
// until it holds a tick: the ticks walked stay few whether the schedule
// fires every second or once a year, and however long ago after was.
func latestTick(sched cron.Schedule, after, now time.Time) (time.Time, bool) {
	for d := time.Second; ; d *= 2 {
		from := now.Add(-d)
		if from.Before(after) {
			from = after
		}
		if t := sched.Next(from); !t.After(now) {
			last := t
			for t = sched.Next(t); !t.After(now); t = sched.Next(t) {
				last = t
			}
			return last, true
		}
		if !from.After(after) {
			return time.Time{}, false
		}
	}
}

// publishTick publishes a tick, retrying until it is published or ctx
// ends.
func (r *runner) publishTick(ctx context.Context, tick Tick) {
	data, _ := json.Marshal(tick)
	msg := message.NewMessage(derivedID(r.f.Name, "tick/"+tick.Time.UTC().Format(time.RFC3339Nano)), data)
	msg.Metadata.Set("content_type", "application/json")
	_, _ = retry(ctx, forever, func() error { return r.e.opts.Broker.Publisher().Publish(r.f.InputTopic(), msg) },
		func(err error, wait time.Duration) {
			r.log.Error("publishing a schedule tick failed; retrying", "time", tick.Time, "error", err, "wait", wait)
		})
}
