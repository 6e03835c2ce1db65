//go:build !cgo || purego

package ai

import "errors"

// cgoRuntime says the runtime binding is built in: not in this build.
const cgoRuntime = false

var errNoCgo = errors.New("built without cgo: ONNX Runtime cannot be used")

func ortLoad(string) error { return errNoCgo }

func ortInspect([]byte) (in, out []Info, err error) { return nil, nil, errNoCgo }

func ortSession([]byte, []string, []string, int) (session, error) { return nil, errNoCgo }
