package brokers

import (
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// SetPosition records where a streamed message sits (partition, offset)
// and when its broker stored it, for Position and Timestamp. Brokers in
// other packages call it on the messages their streams deliver.
func SetPosition(msg *message.Message, partition int32, offset int64, stored time.Time) {
	withPosition(msg, position{partition: partition, offset: offset, time: stored})
}
