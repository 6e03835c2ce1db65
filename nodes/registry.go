package nodes

import (
	"fmt"
	"sort"
	"sync"
)

// Registry maps node type names to specs. It is safe for concurrent use.
// The global registry holds the built-in nodes (registered by their
// packages' init functions); NewRegistry makes an isolated one, for tests
// or for embedding Sluice with a chosen set of nodes.
type Registry struct {
	mu    sync.RWMutex
	specs map[string]*Spec
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{specs: map[string]*Spec{}} }

var global = NewRegistry()

// Global returns the process-wide registry.
func Global() *Registry { return global }

// Register adds spec to the global registry; see Registry.Register. It
// panics on a bad spec: node packages call it from init, where a bad spec
// is a programming error that must stop the program at start-up, as
// registering a URL scheme twice does.
func Register(spec Spec) {
	if err := global.Register(spec); err != nil {
		panic(err)
	}
}

// Register adds a node type after checking its spec with CheckSpec (type
// name, fields, defaults, options, default expressions, examples); a type
// is registered once. The error lists every problem of the spec.
func (r *Registry) Register(spec Spec) error {
	if err := CheckSpec(spec); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.specs[spec.Type]; dup {
		return fmt.Errorf("nodes: %s registered twice", spec.Type)
	}
	s := spec
	r.specs[spec.Type] = &s
	return nil
}

// Clone returns an independent copy, to extend without touching r.
func (r *Registry) Clone() *Registry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := NewRegistry()
	for k, v := range r.specs {
		c.specs[k] = v
	}
	return c
}

// Lookup returns the spec of a type.
func (r *Registry) Lookup(typ string) (*Spec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.specs[typ]
	return s, ok
}

// Types returns the registered type names, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.specs))
	for t := range r.specs {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Specs returns the registered specs, sorted by type.
func (r *Registry) Specs() []*Spec {
	types := r.Types()
	out := make([]*Spec, 0, len(types))
	for _, t := range types {
		s, _ := r.Lookup(t)
		out = append(out, s)
	}
	return out
}
