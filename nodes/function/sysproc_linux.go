package function

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setProcAttr puts the worker in its own process group (so a kill takes
// its children too) and kills it if Sluice dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the worker's process group.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// setLimits caps the worker's data segment (heap and private mappings:
// RLIMIT_DATA, which unlike RLIMIT_AS leaves runtimes that reserve large
// address ranges, such as V8, able to start). It is applied right after
// the process starts, before it is given any work.
func setLimits(pid int, memory int64) error {
	if memory <= 0 {
		return nil
	}
	lim := &unix.Rlimit{Cur: uint64(memory), Max: uint64(memory)}
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, lim, nil); err != nil {
		return fmt.Errorf("RLIMIT_DATA: %w", err)
	}
	return nil
}

var clockTicks = 100.0 // USER_HZ: 100 on every Linux ABI Go supports

// limitCPU lets the worker use d more CPU time from now: its soft
// RLIMIT_CPU is set to what it has used plus d (SIGXCPU past it, which
// kills it), the hard limit stays as it is so the next call can raise it again.
func limitCPU(pid int, d time.Duration) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return err
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	used := (utime + stime) / clockTicks
	soft := uint64(math.Ceil(used + d.Seconds()))
	return unix.Prlimit(pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: soft, Max: unix.RLIM_INFINITY}, nil)
}

// onCPULimit calls f when the process passes its soft RLIMIT_CPU: Go
// processes ignore SIGXCPU unless they ask for it.
func onCPULimit(f func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGXCPU)
	go func() {
		<-ch
		f()
	}()
}
