package flows

import (
	"context"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/state"
)

// MetaReplayOf links a replayed message to the dead letter it came from.
const MetaReplayOf = "sluice_replay_of"

// ReplayDeadLetters publishes the dead letters matching f again, each to
// the topic its flow was triggered from (or to, when set), unchanged but for
// Sluice's failure metadata, with MetaReplayOf naming the dead letter, and
// marks them replayed. The replay's id is derived from the dead letter, so
// replaying after a crash publishes the same id. progress, when not nil, is
// called after each message.
func ReplayDeadLetters(ctx context.Context, pub message.Publisher, st *state.DB, f state.DeadLetterFilter, to string,
	progress func(done, total int)) (int, error) {
	dls, err := st.DeadLetters(ctx, f)
	if err != nil {
		return 0, err
	}
	for i, dl := range dls {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		topic := dl.SourceTopic
		if to != "" {
			topic = to
		}
		m := message.NewMessage(derivedID(dl.ID, "replay"), dl.Payload)
		for k, v := range dl.Metadata {
			if !strings.HasPrefix(k, "sluice_") || k == MetaInput {
				m.Metadata.Set(k, v)
			}
		}
		m.Metadata.Set(MetaReplayOf, dl.ID)
		if err := pub.Publish(topic, m); err != nil {
			return i, fmt.Errorf("replay %s to %s: %w", dl.ID, topic, err)
		}
		if err := st.MarkReplayed(ctx, dl.ID, m.UUID); err != nil {
			return i, err
		}
		if progress != nil {
			progress(i+1, len(dls))
		}
	}
	return len(dls), nil
}
