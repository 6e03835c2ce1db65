package sluicefn

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// decodeRequest fills req from one request object. It finds the top-level
// fields by scanning and keeps event and payload as raw JSON, which in a
// GOOS=wasip1 module is several times faster than encoding/json's
// reflection. Values are not validated beyond what each field needs.
func decodeRequest(line []byte, req *Request) error {
	b := append([]byte(nil), line...) // the handler may keep event or payload
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return errors.New("not a JSON object")
	}
	for i = skipSpace(b, i+1); i < len(b) && b[i] != '}'; {
		k, err := skipValue(b, i)
		if err != nil || b[i] != '"' {
			return fmt.Errorf("bad key at byte %d", i)
		}
		key := b[i+1 : k-1] // a []byte: switching on string(key) does not allocate
		if i = skipSpace(b, k); i == len(b) || b[i] != ':' {
			return fmt.Errorf("%s: no colon", key)
		}
		i = skipSpace(b, i+1)
		v, err := skipValue(b, i)
		if err == nil {
			err = setField(req, key, b[i:v])
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if i = skipSpace(b, v); i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		} else if i < len(b) && b[i] != '}' {
			return fmt.Errorf("%s: no comma after the value", key)
		}
	}
	if i == len(b) {
		return errors.New("unexpected end of the object")
	}
	return nil
}

func setField(r *Request, key, v []byte) error {
	switch string(key) {
	case "id":
		return str(v, &r.ID)
	case "flow":
		return str(v, &r.Flow)
	case "run":
		return str(v, &r.Run)
	case "body_path":
		return str(v, &r.BodyPath)
	case "event":
		r.Event = v
	case "payload":
		r.Payload = v
	case "warmup":
		r.Warmup = string(v) == "true"
	case "attempt":
		n, err := strconv.Atoi(string(v))
		r.Attempt = n
		return err
	case "deadline":
		var s string
		if err := str(v, &s); err != nil || s == "" {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		r.Deadline = t
		return err
	case "meta":
		if string(v) == "{}" {
			r.Meta = map[string]string{}
			return nil
		}
		return json.Unmarshal(v, &r.Meta)
	case "object":
		return json.Unmarshal(v, &r.Object)
	}
	return nil
}

// str reads a JSON string (or null); escaped ones go through encoding/json.
func str(v []byte, s *string) error {
	if len(v) >= 2 && v[0] == '"' {
		for _, c := range v[1 : len(v)-1] {
			if c == '\\' {
				return json.Unmarshal(v, s)
			}
		}
		*s = string(v[1 : len(v)-1])
		return nil
	}
	if string(v) == "null" {
		return nil
	}
	return errors.New("not a string")
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i == len(b) {
				return i, errors.New("unterminated string")
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth < 0 {
				return i, nil
			}
		case ',', ' ', '\n', '\t', '\r', ':':
			if depth == 0 {
				return i, nil
			}
		}
		if depth == 0 && (b[i] == '"' || b[i] == '}' || b[i] == ']') {
			return i + 1, nil
		}
	}
	if depth != 0 || i == 0 {
		return i, errors.New("unexpected end")
	}
	return i, nil
}
