package function

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/nodes"
)

// decodeResponse reads a response line; errors are permanent (the
// function's output is wrong: retrying it gives the same) and mean the
// worker's stream can no longer be trusted. The payload stays raw (a
// slice of line, which the response then owns).
func decodeResponse(name string, line []byte, id string) (*response, error) {
	r, err := scanResponse(line)
	if err != nil { // encoding/json says exactly what is wrong
		r = &response{}
		if err := json.Unmarshal(line, r); err != nil {
			return nil, nodes.Permanent(fmt.Errorf("function %s: response is not a JSON object (%w): %q (write logs to stderr, not stdout)", name, err, snippet(line)))
		}
	}
	if id != "" && r.ID != id {
		return nil, nodes.Permanent(fmt.Errorf("function %s: response answers id %q, want %q (write logs to stderr, not stdout)", name, r.ID, id))
	}
	return r, nil
}

// errNotPlain sends a response to encoding/json.
var errNotPlain = errors.New("not a plain response")

// scanResponse decodes a valid JSON object of the usual shape as
// json.Unmarshal would, without its reflection (the larger part of the
// node's own time in a warm call): top-level fields found by scanning,
// payload kept raw, meta through encoding/json. Anything else (not an
// object, a field of another type, escapes or non-ASCII in a string,
// keys differing from the fields only in case) is errNotPlain.
func scanResponse(line []byte) (*response, error) {
	if !json.Valid(line) {
		return nil, errNotPlain
	}
	i := skipSpace(line, 0)
	if line[i] != '{' {
		return nil, errNotPlain
	}
	r := &response{}
	for i = skipSpace(line, i+1); line[i] != '}'; {
		k := skipValue(line, i)
		key := line[i+1 : k-1]
		i = skipSpace(line, skipSpace(line, k)+1) // past the colon
		end := skipValue(line, i)
		v := line[i:end]
		var err error
		switch string(key) {
		case "id":
			err = plainString(v, &r.ID)
		case "error":
			err = plainString(v, &r.Error)
		case "host_log":
			err = plainString(v, &r.HostLog)
		case "permanent":
			err = plainBool(v, &r.Permanent)
		case "host_cold":
			err = plainBool(v, &r.HostCold)
		case "payload":
			r.Payload = v
		case "meta":
			err = json.Unmarshal(v, &r.Meta)
		default:
			for _, f := range [...]string{"id", "error", "host_log", "permanent", "host_cold", "payload", "meta"} {
				if bytes.EqualFold(key, []byte(f)) || bytes.IndexByte(key, '\\') >= 0 {
					err = errNotPlain
				}
			}
		}
		if err != nil {
			return nil, errNotPlain
		}
		if i = skipSpace(line, end); line[i] == ',' {
			i = skipSpace(line, i+1)
		}
	}
	return r, nil
}

// plainString reads a JSON string of printable ASCII without escapes,
// or null (which leaves s as it is).
func plainString(v []byte, s *string) error {
	if string(v) == "null" {
		return nil
	}
	if len(v) < 2 || v[0] != '"' {
		return errNotPlain
	}
	for _, c := range v[1 : len(v)-1] {
		if c == '\\' || c >= 0x80 {
			return errNotPlain
		}
	}
	*s = string(v[1 : len(v)-1])
	return nil
}

// plainBool reads true, false or null (which leaves b as it is).
func plainBool(v []byte, b *bool) error {
	switch string(v) {
	case "true", "false":
		*b = string(v) == "true"
	case "null":
	default:
		return errNotPlain
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the value starting at b[i], in valid JSON.
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
			continue
		case '}', ']':
			if depth == 0 { // the end of the object holding a number or literal
				return i
			}
			depth--
		case ',', ':', ' ', '\n', '\t', '\r':
			if depth == 0 {
				return i
			}
			continue
		default:
			continue
		}
		if depth == 0 {
			return i + 1
		}
	}
	return i
}
