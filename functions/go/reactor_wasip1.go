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
	out = appendAnswer(out[:0], in[:size], registered) // the host copies it out before the next call
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(out))))<<32 | uint64(len(out))
}
