package nodes

import "encoding/json"

// Record is what a batching node receives for a message its flow's steps
// have run on: the payload as JSON, except a text payload that came from
// a message that was not JSON, which stays its text. original is the
// message's payload as received.
//
// A JSON string message ("hello" with its quotes) is decoded to a Go string
// like a text message is: it must be written back as JSON, or a JSON
// format refuses it as "not JSON".
func (e *Envelope) Record(original []byte) ([]byte, error) {
	if s, isText := e.Payload.(string); isText && !json.Valid(original) {
		return []byte(s), nil
	}
	return e.PayloadJSON()
}
