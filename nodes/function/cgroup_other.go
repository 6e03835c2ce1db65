//go:build !linux

package function

import (
	"errors"
	"os/exec"
)

type workerCgroup struct{}

func workerCgroups() (string, error) { return "", errors.New("cgroups are Linux only") }

func newWorkerCgroup(string, *exec.Cmd, int64, float64) (*workerCgroup, error) {
	return nil, errors.New("cgroups are Linux only")
}

func (*workerCgroup) oomKilled() bool { return false }
func (*workerCgroup) remove()         {}
