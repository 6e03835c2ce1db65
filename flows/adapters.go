package flows

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// Trigger adapters: each kind of trigger decodes the messages of its
// flow's input topic into the run's envelope in its own way. The runner
// picks its adapter once, when the engine is built.

// adapter decodes a delivered message into env (payload, body, object,
// request) and returns the input's identity for the completion ledger, or
// skip when the trigger filters the message out. An error is the input's
// fault: the run fails permanently with it.
type adapter interface {
	decode(msg *message.Message, env *nodes.Envelope) (input string, skip bool, err error)
}

// answerer is an adapter whose runs answer someone: a queued HTTP
// request. prepare sets a successful run's answer (or fails the run);
// answer keeps the answer, a failure's included, with the run record and
// hands it to whoever waits for it.
type answerer interface {
	prepare(d *delivery)
	answer(d *delivery)
}

func adapterFor(r *runner) adapter {
	switch r.f.Trigger.Kind {
	case TriggerBucket:
		return bucketAdapter{t: r.f.Trigger.Bucket}
	case TriggerHTTP:
		return &httpAdapter{r: r}
	}
	return messageAdapter{} // topics and schedule ticks
}

// messageAdapter makes a message the envelope's payload (its JSON, or its
// text when it is not JSON) and body (its bytes); the message id is the
// input's identity.
type messageAdapter struct{}

func (messageAdapter) decode(msg *message.Message, env *nodes.Envelope) (string, bool, error) {
	setMessage(env, msg)
	return msg.UUID, false, nil
}

func setMessage(env *nodes.Envelope, msg *message.Message) {
	var p any
	if err := json.Unmarshal(msg.Payload, &p); err == nil {
		env.Payload = p
	} else {
		env.Payload = string(msg.Payload)
	}
	env.SetBody(msg.Payload, msg.Metadata.Get("content_type"))
}

// bucketAdapter reads object events: the object becomes the envelope's
// object (its body read when a step asks), the event its payload, and
// bucket/key@etag (see objectIdentity) the input's identity, so a repeated
// event of one object version runs once.
type bucketAdapter struct{ t *BucketTrigger }

func (a bucketAdapter) decode(msg *message.Message, env *nodes.Envelope) (string, bool, error) {
	ev, err := decodeObjectEvent(msg.Payload)
	if err != nil {
		return "", false, err
	}
	if !a.wants(ev) {
		return "", true, nil
	}
	env.Event.Name = ev.Name
	if p := ev.Metadata[storage.MetaRun]; p != "" {
		env.Meta[MetaRun] = p // the run that wrote the object: this run's parent
	}
	if ev.Created() {
		env.Object = &storage.ObjectInfo{Bucket: ev.Bucket, Key: ev.Key, Size: ev.Size, ETag: ev.ETag, ContentType: ev.ContentType, Modified: ev.Time}
	}
	var p any
	_ = json.Unmarshal(msg.Payload, &p)
	env.Payload = p
	return objectIdentity(ev), false, nil
}

func decodeObjectEvent(b []byte) (storage.ObjectEvent, error) {
	var ev storage.ObjectEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, fmt.Errorf("not an object event: %w", err)
	}
	if ev.Bucket == "" || ev.Key == "" || ev.Name == "" {
		return ev, errors.New("not an object event: bucket, key and event are required")
	}
	return ev, nil
}

// wants reports whether the trigger's filters accept the event.
func (a bucketAdapter) wants(ev storage.ObjectEvent) bool {
	t := a.t
	if ev.Bucket != t.Bucket || !strings.HasPrefix(ev.Key, t.Prefix) {
		return false
	}
	if len(t.Suffixes) > 0 {
		ok := false
		for _, s := range t.Suffixes {
			ok = ok || strings.HasSuffix(strings.ToLower(ev.Key), strings.ToLower(s))
		}
		if !ok {
			return false
		}
	}
	for _, want := range t.Events {
		if want == "created" && ev.Created() || want == "removed" && ev.Removed() {
			return true
		}
	}
	return false
}
