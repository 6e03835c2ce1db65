// Package scheme is the registry behind brokers' and storage's "open by
// URL scheme": drivers register a function per scheme at init.
package scheme

import (
	"net/url"
	"sort"
	"sync"
)

// Registry maps URL schemes to values (open functions). It is safe for
// concurrent use.
type Registry[F any] struct {
	what string // "broker", "storage": for panics
	mu   sync.RWMutex
	m    map[string]F
}

// New returns an empty registry for drivers of the named kind.
func New[F any](what string) *Registry[F] { return &Registry[F]{what: what, m: map[string]F{}} }

// Register adds a scheme; registering one twice panics (a programming
// error found at start-up).
func (r *Registry[F]) Register(scheme string, f F) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[scheme]; dup {
		panic(r.what + ": scheme registered twice: " + scheme)
	}
	r.m[scheme] = f
}

// Lookup returns a scheme's value.
func (r *Registry[F]) Lookup(scheme string) (F, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.m[scheme]
	return f, ok
}

// Schemes lists the registered schemes, sorted.
func (r *Registry[F]) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for s := range r.m {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Path returns the file path a URL names: "x://rel/dir", "x:///abs" and
// "x:rel" all work.
func Path(u *url.URL) string {
	if u.Opaque != "" {
		return u.Opaque
	}
	return u.Host + u.Path
}
