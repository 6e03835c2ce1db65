package storage

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The folder driver keeps an object's user metadata in extended
// attributes named user.<key>, set on the temporary file before it is
// renamed into place (so a reader never sees an object without them).

const xattrPrefix = "user."

// setMeta writes meta as extended attributes of f. A filesystem without
// user extended attributes keeps none: the object is written without.
func setMeta(f *os.File, meta map[string]string) error {
	for k, v := range meta {
		err := unix.Fsetxattr(int(f.Fd()), xattrPrefix+k, []byte(v), 0)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("metadata %s: %w", k, err)
		}
	}
	return nil
}

// readMeta reads the user metadata of key beneath bucketDir; nil when it
// has none or cannot be read.
func readMeta(bucketDir, key string) map[string]string {
	f, err := openObject(bucketDir, key)
	if err != nil {
		return nil
	}
	defer f.Close()
	fd := int(f.Fd())
	buf := make([]byte, 1024)
	n, err := unix.Flistxattr(fd, buf)
	if err != nil || n == 0 {
		return nil
	}
	var meta map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		k, ok := strings.CutPrefix(name, xattrPrefix)
		if !ok || k == "" {
			continue
		}
		val := make([]byte, 1024)
		m, err := unix.Fgetxattr(fd, name, val)
		if err != nil {
			continue
		}
		if meta == nil {
			meta = map[string]string{}
		}
		meta[k] = string(val[:m])
	}
	return meta
}
