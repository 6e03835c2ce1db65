package statemachine

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/nodes"
)

// Metadata of a timer's message: which machine, entity, version and event
// it fires for.
const (
	metaTimerMachine = "sluice_timer_machine"
	metaTimerKey     = "sluice_timer_key"
	metaTimerVersion = "sluice_timer_version"
	metaTimerEvent   = "sluice_timer_event"
	// metaPartitionKey keys the message on Kafka (see brokers/kafka.go).
	metaPartitionKey = "partition_key"
)

var plainField = regexp.MustCompile(`^\s*payload\.([A-Za-z_][A-Za-z0-9_]*)\s*$`)

// payloadField is X when expr is payload.X, else "".
func payloadField(expr string) string {
	if m := plainField.FindStringSubmatch(expr); m != nil {
		return m[1]
	}
	return ""
}

// timerBatch is how many due timers one claim takes.
const timerBatch = 100

// timerOf reads the timer a message fires, if it is one of this
// machine's.
func (t *transition) timerOf(env *nodes.Envelope) (machines.Timer, bool, error) {
	if env.Meta[metaTimerMachine] != t.machine || t.machine == "" {
		return machines.Timer{}, false, nil
	}
	v, err := strconv.ParseInt(env.Meta[metaTimerVersion], 10, 64)
	if err != nil || env.Meta[metaTimerKey] == "" || env.Meta[metaTimerEvent] == "" {
		return machines.Timer{}, false, nodes.Permanent(fmt.Errorf("timer message %s: damaged timer metadata", env.Event.ID))
	}
	return machines.Timer{Machine: t.machine, Key: env.Meta[metaTimerKey], Version: v, Event: env.Meta[metaTimerEvent]}, true, nil
}

// timersFor are the timers entering state sets.
func (t *transition) timersFor(state string, env *nodes.Envelope) ([]machines.Timer, error) {
	tos := t.timeouts[state]
	if len(tos) == 0 {
		return nil, nil
	}
	topic := env.Event.Topic
	if topic == "" {
		topic = t.timerTopic
	}
	if topic == "" {
		return nil, nodes.Permanent(fmt.Errorf("%s: state %s has a timeout, but the message came from no topic: set timer_topic", t.machine, state))
	}
	now := time.Now()
	out := make([]machines.Timer, len(tos))
	for i, to := range tos {
		out[i] = machines.Timer{Event: to.event, Topic: topic, Due: now.Add(to.after)}
	}
	return out, nil
}

// pollTimers fires due timers every poll interval until ctx ends.
func (t *transition) pollTimers(ctx context.Context) {
	defer close(t.stopped)
	tick := time.NewTicker(t.poll)
	defer tick.Stop()
	for {
		for {
			n, err := t.store.FireDue(ctx, t.machine, time.Now(), timerBatch, t.fire)
			if err != nil {
				if ctx.Err() == nil {
					t.log.Warn("firing due timers failed; retrying", "machine", t.machine, "error", err)
				}
				break
			}
			if n < timerBatch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// fire publishes the timers' events, grouped by topic.
func (t *transition) fire(ctx context.Context, ts []machines.Timer) error {
	byTopic := map[string][]*message.Message{}
	var topics []string
	for _, tm := range ts {
		body := map[string]any{"machine": tm.Machine, "key": tm.Key, "event": tm.Event, "state": tm.State,
			"version": tm.Version, "timer": true}
		// Where key and event are plain payload fields, the message
		// carries them there too, as the machine's other events do.
		if f := payloadField(t.key.Source()); f != "" {
			body[f] = tm.Key
		}
		if f := payloadField(t.ev.Source()); f != "" {
			body[f] = tm.Event
		}
		payload, err := json.Marshal(body)
		if err != nil {
			return err
		}
		msg := message.NewMessage(tm.ID(), payload)
		msg.Metadata.Set(metaTimerMachine, tm.Machine)
		msg.Metadata.Set(metaTimerKey, tm.Key)
		msg.Metadata.Set(metaTimerVersion, strconv.FormatInt(tm.Version, 10))
		msg.Metadata.Set(metaTimerEvent, tm.Event)
		msg.Metadata.Set(metaPartitionKey, tm.Key)
		if _, ok := byTopic[tm.Topic]; !ok {
			topics = append(topics, tm.Topic)
		}
		byTopic[tm.Topic] = append(byTopic[tm.Topic], msg)
	}
	for _, topic := range topics {
		if err := t.publish(ctx, topic, byTopic[topic]...); err != nil {
			return fmt.Errorf("publish timers to %s: %w", topic, err)
		}
		t.log.Info("timers fired", "machine", t.machine, "topic", topic, "count", len(byTopic[topic]))
	}
	return nil
}

var (
	_ nodes.Starter = (*transition)(nil)
	_ nodes.Closer  = (*transition)(nil)
)
