package flows

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/nodes"
)

// Lineage: every output records the run that made it — MetaRun on
// published messages, the object metadata key storage.MetaRun on objects
// storage nodes write — and every run records its parent: the run that
// made its input (state.Run.Parent). `sluice runs show ID --tree` follows
// the chain both ways.

// parentRun is the run that made a delivered input: the message's
// MetaRun, which the bucket adapter sets from the object's metadata.
func parentRun(msg *message.Message, env *nodes.Envelope) string {
	if p := env.Meta[MetaRun]; p != "" {
		return p
	}
	return msg.Metadata.Get(MetaRun)
}
