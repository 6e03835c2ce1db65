package nodes

import (
	"fmt"
	"sort"
	"strings"
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

// Register adds spec to the global registry; see Registry.Register.
func Register(spec Spec) {
	if err := global.Register(spec); err != nil {
		panic(err)
	}
}

// Register adds a node type. The type name must be lowercase words joined
// by dots or underscores, registered once, with a constructor.
func (r *Registry) Register(spec Spec) error {
	if !validType(spec.Type) {
		return fmt.Errorf("nodes: invalid type name %q: use lowercase words joined by '.', such as image.thumbnail", spec.Type)
	}
	if spec.New == nil {
		return fmt.Errorf("nodes: %s has no constructor", spec.Type)
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

func validType(t string) bool {
	if t == "" || strings.HasPrefix(t, ".") || strings.HasSuffix(t, ".") || strings.Contains(t, "..") {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
