// Package sluicefn helps write Sluice functions in Go, for runtime exec
// (a worker binary) and runtime wasm (GOOS=wasip1). No dependencies.
// A handler's returned value becomes the payload (nil keeps it); a Result sets
// metadata too. Errors are transient (retried) unless wrapped by Permanent.
// Log to stderr: stdout carries the answers.
package sluicefn

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"time"
)

// Request is what Sluice sends; docs/functions.md describes each field.
type Request struct {
	ID       string            `json:"id"`
	Flow     string            `json:"flow"`
	Run      string            `json:"run"`
	Attempt  int               `json:"attempt"`
	Deadline time.Time         `json:"deadline"`
	Event    json.RawMessage   `json:"event"`
	Payload  json.RawMessage   `json:"payload"`
	Meta     map[string]string `json:"meta"`
	Object   map[string]any    `json:"object"`
	BodyPath string            `json:"body_path"`
	Warmup   bool              `json:"warmup"`
}

// Result is a payload with metadata, for handlers that set both.
type Result struct {
	Payload any
	Meta    map[string]string
}

// Handler handles one request.
type Handler func(req *Request) (any, error)

type permanent struct{ error }

// Permanent marks err as one no retry can fix.
func Permanent(err error) error { return permanent{err} }

type response struct {
	ID        string            `json:"id"`
	Payload   any               `json:"payload,omitempty"`
	Meta      map[string]string `json:"meta,omitempty"`
	Error     string            `json:"error,omitempty"`
	Permanent bool              `json:"permanent,omitempty"`
}

// Answer runs h on one encoded request and returns the encoded response.
func Answer(line []byte, h Handler) []byte { return appendAnswer(nil, line, h) }

// appendAnswer is Answer appending to dst, so a reactor reuses one buffer.
func appendAnswer(dst, line []byte, h Handler) []byte {
	req, out := Request{}, response{}
	if err := decodeRequest(line, &req); err != nil {
		out.Error, out.Permanent = "bad request: "+err.Error(), true
	} else if out.ID = req.ID; !req.Warmup {
		v, err := h(&req)
		if r, ok := v.(Result); ok {
			out.Payload, out.Meta = r.Payload, r.Meta
		} else {
			out.Payload = v
		}
		if err != nil {
			out = response{ID: req.ID, Error: err.Error(), Permanent: errors.As(err, new(permanent))}
		}
	}
	b, err := out.appendJSON(dst)
	if err != nil {
		b, _ = response{ID: req.ID, Error: "encode response: " + err.Error(), Permanent: true}.appendJSON(dst)
	}
	return b
}

var registered Handler

// Register sets the handler of a reactor module (GOOS=wasip1, go build
// -buildmode=c-shared), which keeps its instance between calls: much
// faster than a command. Call it from init: a reactor's main never runs.
func Register(h Handler) { registered = h }

// Serve answers requests from stdin, one JSON object per line, until it
// closes: a worker for runtime exec, or a WASI command reading one request.
func Serve(h Handler) {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<30)
	w := bufio.NewWriter(os.Stdout)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		_, _ = w.Write(append(Answer(sc.Bytes(), h), '\n'))
		_ = w.Flush()
	}
}
