//go:build !linux

package brokers

import (
	"errors"
	"os"
	"syscall"
)

// lockRange locks the whole file (flock): without open-file-description
// locks, a queue file has one consuming process, whatever the group.
func lockRange(f *os.File, _ int64) (busy bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
