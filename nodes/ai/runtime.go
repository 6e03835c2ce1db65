// Package ai holds the model inference nodes, on ONNX Runtime: ai.onnx
// runs any ONNX model on tensors built from the payload or from the image
// decoded on the envelope; ai.ocr reads text from an image with PaddleOCR's
// detector, direction classifier and recognizer.
//
// ONNX Runtime is a shared library loaded at run time (dlopen, once per
// process), not linked: Sluice builds and runs without it, and only these
// nodes need it. They fail validation, saying how to get it, when it is
// missing. scripts/models.sh fetches it and the OCR models into
// .cache/onnx. The library is found, in order, at:
//
//  1. $SLUICE_ONNXRUNTIME_LIB (a file);
//  2. lib/libonnxruntime.so.1 in the ONNX folder.
//
// The ONNX folder (which also holds the OCR models, under ppocr/) is
// $SLUICE_ONNX_DIR when set; else the first .cache/onnx found in the flow
// file's folder or one of its parents, then in the working directory or
// one of its parents (so a flow anywhere in a checkout, or `sluice run`
// from anywhere in it, finds what the script fetched); else
// $XDG_CACHE_HOME/sluice/onnx (~/.cache/sluice/onnx).
//
// Built without cgo, or with the purego tag, the nodes are registered but
// fail validation: the runtime binding needs cgo.
package ai

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Environment variables that locate the runtime and the models.
const (
	EnvLibrary = "SLUICE_ONNXRUNTIME_LIB"
	EnvDir     = "SLUICE_ONNX_DIR"
)

// howToGet ends every error about missing files.
const howToGet = "run ./scripts/models.sh from the Sluice repository (it fetches ONNX Runtime and the OCR models into .cache/onnx), or set " + EnvLibrary + " to libonnxruntime.so"

// ErrNoRuntime is wrapped by errors saying ONNX Runtime cannot be used.
var ErrNoRuntime = errors.New("ONNX Runtime is not available")

// Dir returns the ONNX folder for a flow file (may be empty), by the rules
// of the package documentation. It returns the folder to use even when it
// does not exist (the home cache), with ok false.
func Dir(flowFile string) (dir string, ok bool) {
	if d := os.Getenv(EnvDir); d != "" {
		_, err := os.Stat(d)
		return d, err == nil
	}
	var starts []string
	if flowFile != "" {
		if abs, err := filepath.Abs(flowFile); err == nil {
			starts = append(starts, filepath.Dir(abs))
		}
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, s := range starts {
		for d := s; ; d = filepath.Dir(d) {
			c := filepath.Join(d, ".cache", "onnx")
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c, true
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	home := os.Getenv("XDG_CACHE_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", false
		}
		home = filepath.Join(h, ".cache")
	}
	d := filepath.Join(home, "sluice", "onnx")
	_, err := os.Stat(d)
	return d, err == nil
}

// LibraryPath returns the ONNX Runtime library to load for a flow file,
// checking that it exists; the error says how to get it.
func LibraryPath(flowFile string) (string, error) {
	if p := os.Getenv(EnvLibrary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v; %s", ErrNoRuntime, EnvLibrary, p, err, howToGet)
		}
		return p, nil
	}
	dir, _ := Dir(flowFile)
	p := filepath.Join(dir, "lib", "libonnxruntime.so.1")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: no %s: %s", ErrNoRuntime, p, howToGet)
	}
	return p, nil
}

var (
	loadMu     sync.Mutex
	loadedPath string
)

// Load loads ONNX Runtime for a flow file, once per process: later calls
// return at once, whatever library they would have picked (the first one
// loaded serves every node). A failed load is tried again next time.
func Load(flowFile string) error {
	loadMu.Lock()
	defer loadMu.Unlock()
	if loadedPath != "" {
		return nil
	}
	if !cgoRuntime {
		return fmt.Errorf("%w: this sluice was built without cgo (or with the purego tag); the ai nodes need a cgo build", ErrNoRuntime)
	}
	p, err := LibraryPath(flowFile)
	if err != nil {
		return err
	}
	if err := ortLoad(p); err != nil {
		return fmt.Errorf("%w: load %s: %v; %s", ErrNoRuntime, p, err, howToGet)
	}
	loadedPath = p
	return nil
}

// Loaded returns the path of the library loaded, or "".
func Loaded() string {
	loadMu.Lock()
	defer loadMu.Unlock()
	return loadedPath
}
