package flows

import (
	"context"
	"errors"
	"time"

	"github.com/sluicehq/sluice/brokers"
)

// streamed reports whether the flow consumes its input topic as streams
// (brokers.Streamer) rather than as a router handler: flows ending in a
// batcher.
func (r *runner) streamed() bool {
	s, _ := batcher(r.f)
	return s != nil
}

// stream consumes the flow's input topic as per-partition streams until
// ctx ends; a stream that failed (its uncommitted messages are consumed
// again) restarts after a pause.
func (r *runner) stream(ctx context.Context) {
	st := r.e.opts.Broker.(brokers.Streamer) // checked by NewEngine
	_, _ = retry(ctx, forever, func() error {
		err := st.Stream(ctx, r.f.InputTopic(), r.f.Group(), r.batchPartition)
		if err != nil && ctx.Err() != nil {
			r.log.Warn("stream stopped with an error", "error", err)
			return nil
		}
		if err == nil && ctx.Err() == nil {
			return errStreamEnded
		}
		return err
	}, func(err error, wait time.Duration) {
		r.log.Error("stream failed; its uncommitted messages will be consumed again", "error", err, "retry_in", wait)
	})
}

// errStreamEnded restarts a stream that ended while the engine runs.
var errStreamEnded = errors.New("the stream ended")
