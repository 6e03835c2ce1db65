//go:build wasip1

package sluicefn

import "unsafe"

// The exports Sluice calls in a reactor module (see Register).

var in, out []byte // kept alive between the host's calls

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
