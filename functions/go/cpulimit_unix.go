//go:build unix

package sluicefn

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// A Go process ignores SIGXCPU unless it asks for it, so a worker past
// its RLIMIT_CPU (the step's cpu_time) would keep running: ask, and exit
// as the limit means, saying why on stderr (which Sluice keeps).
func init() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGXCPU)
	go func() {
		<-ch
		fmt.Fprintln(os.Stderr, "sluicefn: cpu_time spent (SIGXCPU); exiting")
		os.Exit(3)
	}()
}
