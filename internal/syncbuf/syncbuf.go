// Package syncbuf is a bytes.Buffer that one goroutine (or a child
// process's output) may write while others read it: captured logs.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is safe for concurrent Write and reads. The zero value is empty
// and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string { return s.From(0) }

// Len is how much was written so far, for From.
func (s *Buffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// From returns what was written after Len returned from.
func (s *Buffer) From(from int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b.Bytes()[from:])
}
