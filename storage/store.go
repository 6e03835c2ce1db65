package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Store is the portable bucket API over a Driver. It validates bucket
// names and keys before the driver sees them and is safe for concurrent use.
type Store struct{ d Driver }

// NewStore wraps a driver.
func NewStore(d Driver) *Store { return &Store{d: d} }

// Driver returns the driver, for tests and drivers' own tools; callers
// after optional behaviour use As.
func (s *Store) Driver() Driver { return s.d }

// As reports whether the store's driver offers the behaviour target points
// to and, if so, sets *target, as errors.As does: target is a non-nil
// pointer to an interface (such as WebhookReceiver or Watcher) or to a
// driver's concrete type. A driver with an As(any) bool method of its own
// (go-cloud's pattern, for values other than itself) is asked first.
// As never panics: any other target reports false.
func (s *Store) As(target any) bool {
	if a, ok := s.d.(interface{ As(any) bool }); ok && a.As(target) {
		return true
	}
	v := reflect.ValueOf(target)
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	dv := reflect.ValueOf(s.d)
	if !dv.IsValid() || !dv.Type().AssignableTo(v.Elem().Type()) {
		return false
	}
	v.Elem().Set(dv)
	return true
}

// NewReader opens an object for reading; the caller closes it.
func (s *Store) NewReader(ctx context.Context, bucket, key string) (io.ReadCloser, ObjectInfo, error) {
	if err := check(bucket, key); err != nil {
		return nil, ObjectInfo{}, err
	}
	return s.d.NewReader(ctx, bucket, key)
}

// ReadAll returns an object's content. An object larger than maxBytes
// (when maxBytes > 0) fails with ErrTooLarge before its content is read.
func (s *Store) ReadAll(ctx context.Context, bucket, key string, maxBytes int64) ([]byte, ObjectInfo, error) {
	r, info, err := s.NewReader(ctx, bucket, key)
	if err != nil {
		return nil, info, err
	}
	defer r.Close()
	if maxBytes > 0 && info.Size > maxBytes {
		return nil, info, fmt.Errorf("%s/%s is %d bytes, over the %d byte limit: %w", bucket, key, info.Size, maxBytes, ErrTooLarge)
	}
	var lr io.Reader = r
	if maxBytes > 0 {
		lr = io.LimitReader(r, maxBytes+1)
	}
	buf := bytes.NewBuffer(make([]byte, 0, max(info.Size, 0)+1))
	if _, err := buf.ReadFrom(lr); err != nil {
		return nil, info, fmt.Errorf("read %s/%s: %w", bucket, key, err)
	}
	if maxBytes > 0 && int64(buf.Len()) > maxBytes {
		return nil, info, fmt.Errorf("%s/%s is over the %d byte limit: %w", bucket, key, maxBytes, ErrTooLarge)
	}
	return buf.Bytes(), info, nil
}

// Put stores r's content under key.
func (s *Store) Put(ctx context.Context, bucket, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	if err := check(bucket, key); err != nil {
		return ObjectInfo{}, err
	}
	return s.d.Put(ctx, bucket, key, r, opts)
}

// PutBytes stores b under key.
func (s *Store) PutBytes(ctx context.Context, bucket, key string, b []byte, opts PutOptions) (ObjectInfo, error) {
	return s.Put(ctx, bucket, key, bytes.NewReader(b), opts)
}

// Stat describes an object without reading it.
func (s *Store) Stat(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	if err := check(bucket, key); err != nil {
		return ObjectInfo{}, err
	}
	return s.d.Stat(ctx, bucket, key)
}

// Delete removes an object; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	if err := check(bucket, key); err != nil {
		return err
	}
	return s.d.Delete(ctx, bucket, key)
}

// List calls fn for each object under prefix, in key order. A prefix no
// valid key can start with (a complete segment that is empty, "." or "..")
// lists nothing, without asking the driver.
func (s *Store) List(ctx context.Context, bucket, prefix string, fn func(ObjectInfo) error) error {
	if err := ValidateBucket(bucket); err != nil {
		return err
	}
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		for _, seg := range strings.Split(prefix[:i], "/") {
			if seg == "" || seg == "." || seg == ".." {
				return nil
			}
		}
	}
	return s.d.List(ctx, bucket, prefix, fn)
}

// EnsureBucket creates a bucket if it is missing.
func (s *Store) EnsureBucket(ctx context.Context, bucket string) error {
	if err := ValidateBucket(bucket); err != nil {
		return err
	}
	return s.d.EnsureBucket(ctx, bucket)
}

// Watch reports the bucket's object events (see Watcher). It fails with
// ErrNotSupported for drivers that cannot watch.
func (s *Store) Watch(ctx context.Context, bucket string, events chan<- ObjectEvent) error {
	if err := ValidateBucket(bucket); err != nil {
		return err
	}
	w, ok := s.d.(Watcher)
	if !ok {
		return fmt.Errorf("watch bucket %s: %w", bucket, ErrNotSupported)
	}
	return w.Watch(ctx, bucket, events)
}

// Close releases the driver.
func (s *Store) Close() error { return s.d.Close() }

func check(bucket, key string) error {
	if err := ValidateBucket(bucket); err != nil {
		return err
	}
	return ValidateKey(key)
}

// ValidateBucket applies S3's bucket naming rules: 3 to 63 characters of
// lowercase letters, digits, dots and hyphens, starting and ending with a
// letter or digit.
func ValidateBucket(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidBucket, name, why) }
	if len(name) < 3 || len(name) > 63 {
		return bad("must be 3 to 63 characters long")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '.' || c == '-':
			if i == 0 || i == len(name)-1 {
				return bad("must start and end with a letter or digit")
			}
		default:
			return bad("may hold only lowercase letters, digits, '.' and '-'")
		}
	}
	if strings.Contains(name, "..") {
		return bad("may not contain \"..\"")
	}
	return nil
}

// MaxKeyLen is S3's limit on key length, in bytes.
const MaxKeyLen = 1024

// ValidateKey rejects keys that are not portable across drivers, that
// could escape a folder, or that would mislead whoever reads them: empty,
// over 1024 bytes, not UTF-8, holding NUL, a backslash, a control
// character (C0, DEL or C1, such as U+0085) or a bidirectional formatting
// character (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C: they
// make "gpj.exe" print as "exe.jpg"), starting with "/", or with an empty,
// "." or ".." path segment.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	case !utf8.ValidString(key):
		return bad("not valid UTF-8")
	case strings.HasPrefix(key, "/"):
		return bad("absolute paths are not keys")
	}
	for _, r := range key {
		if r == 0 {
			return bad("contains NUL")
		}
		if r == '\\' {
			return bad("contains a backslash")
		}
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return bad(fmt.Sprintf("contains the control character %U", r))
		}
		if IsBidiControl(r) {
			return bad(fmt.Sprintf("contains the bidirectional formatting character %U", r))
		}
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return bad("has an empty path segment")
		case ".", "..":
			return bad("has a \".\" or \"..\" path segment")
		}
	}
	return nil
}

// IsBidiControl reports whether r is a Unicode bidirectional formatting
// character: embeddings, overrides and isolates (U+202A–U+202E,
// U+2066–U+2069) and the marks U+200E, U+200F and U+061C.
func IsBidiControl(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}
