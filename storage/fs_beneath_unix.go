//go:build unix

package storage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The folder driver reaches objects beneath a bucket folder one path
// segment at a time, each opened relative to its parent's descriptor with
// O_NOFOLLOW: a symbolic link anywhere below the bucket folder is never
// followed, and a folder swapped for a link between two calls cannot lead
// outside, because no path is resolved twice. Files are opened with
// O_NONBLOCK (a named pipe would otherwise block open until a writer
// comes) and what was opened is checked with fstat: only regular files
// are objects. (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS gives the
// same guarantee in one call on Linux ≥ 5.6; the walk works on every Unix
// and costs a few syscalls per key. os.Root was not enough: it follows
// links that stay inside the root, and still blocks on a FIFO.)
//
// The bucket folder itself is opened normally: the operator may make it,
// or the root, a link to another disk.

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// linkErr reports whether err from an O_NOFOLLOW open means the name is a
// symbolic link (Linux and macOS say ELOOP, FreeBSD EMLINK) or, for
// O_DIRECTORY, not a folder.
func linkErr(err error) bool {
	return errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK) || errors.Is(err, unix.ENOTDIR)
}

// openDir opens the folder of key's parent segments beneath bucketDir,
// creating missing folders when create is set. The caller closes the
// returned descriptor.
func openDir(bucketDir string, segs []string, create bool) (int, error) {
	fd, err := unix.Open(bucketDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: bucketDir, Err: err}
	}
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsRune(seg, '/') {
			unix.Close(fd)
			return -1, fs.ErrNotExist // never a folder of the bucket's
		}
		next, err := unix.Openat(fd, seg, dirFlags, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, seg, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, seg, dirFlags, 0)
			}
		}
		unix.Close(fd)
		switch {
		case err == nil:
			fd = next
		case linkErr(err):
			return -1, fmt.Errorf("%s: %w", seg, errLinkOnPath)
		case errors.Is(err, unix.ENOENT):
			return -1, fs.ErrNotExist
		default:
			return -1, &fs.PathError{Op: "open", Path: seg, Err: err}
		}
	}
	return fd, nil
}

func closeDir(fd int) { unix.Close(fd) }

// isRegular reports whether a stat mode is a regular file's.
func isRegular(mode uint32) bool { return mode&unix.S_IFMT == unix.S_IFREG }

// openObject opens key's regular file beneath bucketDir for reading.
func openObject(bucketDir, key string) (*os.File, error) {
	segs := strings.Split(key, "/")
	dir, err := openDir(bucketDir, segs[:len(segs)-1], false)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	base := segs[len(segs)-1]
	// Look before opening: opening a device can have effects of its own.
	var st unix.Stat_t
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fs.ErrNotExist
		}
		return nil, &fs.PathError{Op: "stat", Path: key, Err: err}
	}
	if !isRegular(uint32(st.Mode)) {
		return nil, errNotRegular
	}
	fd, err := unix.Openat(dir, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case err == nil:
	case linkErr(err):
		return nil, errNotRegular
	case errors.Is(err, unix.ENOENT):
		return nil, fs.ErrNotExist
	default:
		return nil, &fs.PathError{Op: "open", Path: key, Err: err}
	}
	// Checked again on what was opened: the name may have changed since.
	if err := unix.Fstat(fd, &st); err != nil || !isRegular(uint32(st.Mode)) {
		unix.Close(fd)
		return nil, errNotRegular
	}
	// Blocking again: Go's poller treats a non-blocking descriptor as
	// pollable, which a regular file is not.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "open", Path: key, Err: err}
	}
	return os.NewFile(uintptr(fd), key), nil
}

// statObject describes key's regular file beneath bucketDir.
func statObject(bucketDir, key string) (fs.FileInfo, error) {
	f, err := openObject(bucketDir, key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// createObject makes key's parent folders beneath bucketDir (never through
// a link), writes a temporary file there with write, syncs it and renames
// it over key. A link at key itself is replaced, not followed.
func createObject(bucketDir, key string, write func(*os.File) error) error {
	segs := strings.Split(key, "/")
	dir, err := openDir(bucketDir, segs[:len(segs)-1], true)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmpName := tempPrefix + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dir, tmpName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &fs.PathError{Op: "create", Path: key, Err: err}
	}
	tmp := os.NewFile(uintptr(fd), tmpName)
	err = write(tmp)
	if err == nil {
		err = tmp.Chmod(0o644) // the umask may have narrowed the mode
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = unix.Renameat(dir, tmpName, dir, segs[len(segs)-1]); err != nil {
			err = &fs.PathError{Op: "rename", Path: key, Err: err}
		}
	}
	if err != nil {
		_ = unix.Unlinkat(dir, tmpName, 0)
	}
	return err
}

// removeObject removes key's file beneath bucketDir (a link there is
// removed, not followed), then the folders it left empty.
func removeObject(bucketDir, key string) error {
	segs := strings.Split(key, "/")
	dirs := make([]int, 0, len(segs))
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()
	fd, err := openDir(bucketDir, nil, false)
	if err != nil {
		return err
	}
	dirs = append(dirs, fd)
	for _, seg := range segs[:len(segs)-1] {
		next, err := unix.Openat(fd, seg, dirFlags, 0)
		if err != nil {
			if linkErr(err) || errors.Is(err, unix.ENOENT) {
				return nil // nothing of the bucket's there
			}
			return &fs.PathError{Op: "open", Path: seg, Err: err}
		}
		fd = next
		dirs = append(dirs, fd)
	}
	if err := unix.Unlinkat(fd, segs[len(segs)-1], 0); err != nil && !errors.Is(err, unix.ENOENT) {
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
			return nil // a folder is not an object
		}
		return &fs.PathError{Op: "remove", Path: key, Err: err}
	}
	for i := len(segs) - 2; i >= 0; i-- {
		if unix.Unlinkat(dirs[i], segs[i], unix.AT_REMOVEDIR) != nil {
			break
		}
	}
	return nil
}
