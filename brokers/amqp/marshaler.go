package amqp

import (
	"time"

	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// marshaler is watermill-amqp's default (persistent delivery, metadata as
// headers) plus the publish time, which RabbitMQ keeps with the message:
// the stored time `sluice tail` shows and batch keys use.
type marshaler struct{ wamqp.DefaultMarshaler }

func (m marshaler) Marshal(msg *message.Message) (amqp091.Publishing, error) {
	p, err := m.DefaultMarshaler.Marshal(msg)
	if err != nil {
		return p, err
	}
	p.Timestamp = time.Now().UTC()
	return p, nil
}

var _ wamqp.Marshaler = marshaler{}
