//go:build !unix

package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Without openat, each segment below the bucket folder is checked with
// Lstat before use: links are refused as on Unix, though a folder swapped
// for a link between the check and the use is not caught.

func checkBeneath(bucketDir string, segs []string, create bool) (string, error) {
	p := bucketDir
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, `/\:`) {
			return "", fs.ErrNotExist
		}
		p = filepath.Join(p, seg)
		st, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) && create {
			if err = os.Mkdir(p, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
				st, err = os.Lstat(p)
			}
		}
		if err != nil {
			return "", err
		}
		if !st.IsDir() {
			return "", errLinkOnPath
		}
	}
	return p, nil
}

// openDir checks the folders beneath bucketDir; the result is for closeDir.
func openDir(bucketDir string, segs []string, create bool) (string, error) {
	return checkBeneath(bucketDir, segs, create)
}

func closeDir(string) {}

func openObject(bucketDir, key string) (*os.File, error) {
	st, err := statObject(bucketDir, key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(bucketDir, filepath.FromSlash(key)))
	if err != nil {
		return nil, err
	}
	if now, err := f.Stat(); err != nil || !os.SameFile(st, now) {
		f.Close()
		return nil, errNotRegular
	}
	return f, nil
}

func statObject(bucketDir, key string) (fs.FileInfo, error) {
	segs := strings.Split(key, "/")
	dir, err := checkBeneath(bucketDir, segs[:len(segs)-1], false)
	if err != nil {
		return nil, err
	}
	st, err := os.Lstat(filepath.Join(dir, segs[len(segs)-1]))
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	return st, nil
}

func createObject(bucketDir, key string, write func(*os.File) error) error {
	segs := strings.Split(key, "/")
	dir, err := checkBeneath(bucketDir, segs[:len(segs)-1], true)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, segs[len(segs)-1]))
	}
	return err
}

func removeObject(bucketDir, key string) error {
	segs := strings.Split(key, "/")
	dir, err := checkBeneath(bucketDir, segs[:len(segs)-1], false)
	if err != nil {
		return nil
	}
	if err := os.Remove(filepath.Join(dir, segs[len(segs)-1])); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := len(segs) - 1; i > 0; i-- {
		if os.Remove(filepath.Join(append([]string{bucketDir}, segs[:i]...)...)) != nil {
			break
		}
	}
	return nil
}
