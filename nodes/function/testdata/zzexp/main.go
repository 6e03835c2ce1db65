package main

import (
	"encoding/json"
	"os"
	"runtime/debug"
	"strings"
	"unsafe"

	sluicefn "github.com/sluicehq/sluice/functions/go"
)

var in, out []byte
var mode = os.Getenv("MODE")

func init() {
	if os.Getenv("GCP") != "" {
		debug.SetGCPercent(800)
	}
}

//go:wasmexport exp_alloc
func sluiceAlloc(size uint32) uint32 {
	if cap(in) < int(size) {
		in = make([]byte, size)
	}
	in = in[:size]
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(in))))
}

var fixed = []byte(`{"id":"1","payload":{"upper":"HELLO FUNCTION"}}`)

func handle(req *sluicefn.Request) (any, error) {
	var p struct {
		Do   string `json:"do"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(req.Payload, &p)
	return sluicefn.Result{Payload: map[string]any{"upper": strings.ToUpper(p.Text), "pid": os.Getpid()}, Meta: map[string]string{"handled_by": "go"}}, nil
}

type env struct {
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

//go:wasmexport exp_call
func sluiceCall(ptr, size uint32) uint64 {
	switch mode {
	case "empty":
		out = fixed
	case "decode":
		var r sluicefn.Request
		_ = json.Unmarshal(in[:size], &r)
		out = fixed
	case "decodeenv":
		var r env
		_ = json.Unmarshal(in[:size], &r)
		out = fixed
	case "valid":
		_ = json.Valid(in[:size])
		out = fixed
	case "handler":
		var r sluicefn.Request
		r.Payload = json.RawMessage(`{"do":"ok","text":"hello function"}`)
		v, _ := handle(&r)
		out, _ = json.Marshal(v.(sluicefn.Result).Payload)
	case "payload":
		var p struct {
			Do   string `json:"do"`
			Text string `json:"text"`
		}
		_ = json.Unmarshal([]byte(`{"do":"ok","text":"hello function"}`), &p)
		out = fixed
	case "marshal":
		out, _ = json.Marshal(map[string]any{"upper": "HELLO FUNCTION", "pid": 1})
	default:
		out = sluicefn.Answer(in[:size], handle)
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))<<32 | uint64(len(out))
}

func main() {}
