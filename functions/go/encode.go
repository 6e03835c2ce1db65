package sluicefn

import "encoding/json"

// appendJSON appends what json.Marshal(r) gives; only the payload and
// meta go through encoding/json, whose reflection over the response
// itself is a measurable part of a small call in a wasip1 module.
func (r response) appendJSON(b []byte) ([]byte, error) {
	b = appendJSONString(append(b, `{"id":`...), r.ID)
	if r.Payload != nil {
		p, err := json.Marshal(r.Payload)
		if err != nil {
			return nil, err
		}
		b = append(append(b, `,"payload":`...), p...)
	}
	if len(r.Meta) > 0 {
		m, err := json.Marshal(r.Meta)
		if err != nil {
			return nil, err
		}
		b = append(append(b, `,"meta":`...), m...)
	}
	if r.Error != "" {
		b = appendJSONString(append(b, `,"error":`...), r.Error)
	}
	if r.Permanent {
		b = append(b, `,"permanent":true`...)
	}
	return append(b, '}'), nil
}

// appendJSONString appends s quoted as encoding/json quotes it: plain
// ASCII directly, anything needing an escape through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}
