// Command upper is a Sluice function in Go: it upper-cases the payload's
// text and counts its words. The same source builds as a WebAssembly
// reactor (kept instances, the fast way):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o upper.wasm ./upper
//
// as a WASI command (one instance per call), without -buildmode, or as an
// exec worker for any platform with a plain go build.
package main

import (
	"encoding/json"
	"errors"
	"strings"

	sluicefn "github.com/sluicehq/sluice/functions/go"
)

func upper(req *sluicefn.Request) (any, error) {
	var in struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(req.Payload, &in); err != nil || in.Text == nil {
		return nil, sluicefn.Permanent(errors.New(`want a payload {"text": "..."}`))
	}
	return map[string]any{
		"text":  strings.ToUpper(*in.Text),
		"words": len(strings.Fields(*in.Text)),
	}, nil
}

func init() { sluicefn.Register(upper) } // a reactor's entry point

func main() { sluicefn.Serve(upper) } // a command's or worker's
