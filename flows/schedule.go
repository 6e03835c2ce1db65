package flows

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"
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
func (e *Engine) schedule(ctx context.Context, f *Flow) {
	log := e.log.With("flow", f.Name, "schedule", f.Trigger.Cron)
	loc := time.UTC
	if f.Trigger.Timezone != "" {
		l, err := time.LoadLocation(f.Trigger.Timezone)
		if err != nil { // validated at load; the zone database changed since
			log.Error("schedule not started", "error", err)
			return
		}
		loc = l
	}
	sched, err := cronParser.Parse(f.Trigger.Cron)
	if err != nil {
		log.Error("schedule not started", "error", err)
		return
	}
	now := time.Now().In(loc)
	if f.Trigger.CatchUp {
		if missed, ok := e.missedTick(ctx, f, sched, now); ok {
			log.Info("running a tick missed while stopped", "time", missed)
			e.publishTick(ctx, f, Tick{Time: missed, Schedule: f.Trigger.Cron, Missed: true}, log)
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
		e.publishTick(ctx, f, Tick{Time: next, Schedule: f.Trigger.Cron}, log)
		next = sched.Next(next)
	}
}

// missedTick finds the latest scheduled time after the flow's last run
// and before now, if any; a flow that never ran has missed nothing.
func (e *Engine) missedTick(ctx context.Context, f *Flow, sched cron.Schedule, now time.Time) (time.Time, bool) {
	if e.opts.State == nil {
		return time.Time{}, false
	}
	runs, err := e.opts.State.Runs(ctx, state.Filter{Flow: f.Name, Limit: 1})
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

func (e *Engine) publishTick(ctx context.Context, f *Flow, tick Tick, log interface{ Error(string, ...any) }) {
	data, _ := json.Marshal(tick)
	msg := message.NewMessage(derivedID(f.Name, "tick/"+tick.Time.UTC().Format(time.RFC3339Nano)), data)
	msg.Metadata.Set("content_type", "application/json")
	bo := backoff.NewExponentialBackOff()
	for ctx.Err() == nil {
		err := e.opts.Broker.Publisher().Publish(triggerTopic(f), msg)
		if err == nil {
			return
		}
		wait := bo.NextBackOff()
		log.Error("publishing a schedule tick failed; retrying", "time", tick.Time, "error", fmt.Sprint(err), "wait", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}
