package brokers

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockRange takes an exclusive open-file-description lock on byte off of
// f without waiting; busy reports another holder.
func lockRange(f *os.File, off int64) (busy bool, err error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return true, nil
	}
	return false, err
}
