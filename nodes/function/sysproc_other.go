//go:build !linux

package function

import (
	"errors"
	"os/exec"
	"time"
)

func setProcAttr(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

func setLimits(_ int, memory int64) error {
	if memory > 0 {
		return errors.New("memory_mb is supported on Linux only")
	}
	return nil
}

func limitCPU(int, time.Duration) error { return errors.New("cpu_time is supported on Linux only") }

func onCPULimit(func()) {}
