//go:build wasip1

package sluicefn

import "unsafe"

// A reactor module (go build -buildmode=c-shared, GOOS=wasip1) keeps its
// instance between calls, which is much faster than a command: call
// Register from main's init and leave main empty. Sluice calls the two
// exports below.

var (
	registered Handler
	in, out    []byte // kept alive between the host's calls
)

// Register sets the handler of a reactor module.
func Register(h Handler) { registered = h }

//go:wasmexport sluice_alloc
func sluiceAlloc(size uint32) uint32 {
	if cap(in) < int(size) {
		in = make([]byte, size)
	}
	in = in[:size]
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(in))))
}

//go:wasmexport sluice_call
func sluiceCall(ptr, size uint32) uint64 {
	out = Answer(in[:size], registered)
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))<<32 | uint64(len(out))
}
