// Command goworker is a test function in Go: the payload's "do" says how
// to behave. It builds as an exec worker, a WASI command (GOOS=wasip1) and,
// with -tags reactor -buildmode=c-shared, a WASI reactor.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	sluicefn "github.com/sluicehq/sluice/functions/go"
)

var (
	sink  [][]byte
	calls int // calls served by this process or instance
)

func handle(req *sluicefn.Request) (any, error) {
	var p struct {
		Do   string `json:"do"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(req.Payload, &p)
	calls++
	switch p.Do {
	case "", "ok":
		return sluicefn.Result{Payload: map[string]any{"upper": strings.ToUpper(p.Text), "pid": os.Getpid(), "calls": calls}, Meta: map[string]string{"handled_by": "go"}}, nil
	case "body":
		b, err := os.ReadFile(req.BodyPath)
		if err != nil {
			return nil, err
		}
		return map[string]any{"size": len(b)}, nil
	case "crash":
		fmt.Fprintln(os.Stderr, "about to crash")
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	case "spin":
		for {
		}
	case "permanent":
		return nil, sluicefn.Permanent(errors.New("bad order"))
	case "notjson":
		fmt.Println("oops")
		return nil, nil
	case "big":
		return map[string]any{"blob": strings.Repeat("x", 100000)}, nil
	case "hog":
		for {
			sink = append(sink, make([]byte, 16<<20))
		}
	}
	return nil, sluicefn.Permanent(fmt.Errorf("unknown do %q", p.Do))
}
