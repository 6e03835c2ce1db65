package statemachine

import (
	"sync"

	"github.com/sluicehq/sluice/machines"
)

// maxCached bounds the entities a node remembers.
const maxCached = 1 << 16

// entityCache remembers the state and version each entity had after this
// node's last transition of it, so the next event of the entity decides
// without reading it first (one round trip less on PostgreSQL). It is
// only a guess: Apply still applies only from the version decided on, and
// an entity has one state at each version, so a guess that is out of
// date (another process or node moved the entity) just conflicts, and
// the entity is read again. Safe for concurrent use.
type entityCache struct {
	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	state   string
	version int64
}

func (c *entityCache) get(key string) (machines.Entity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[key]
	return machines.Entity{Key: key, State: v.state, Version: v.version}, ok
}

func (c *entityCache) put(e machines.Entity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cached{}
	}
	if _, ok := c.m[e.Key]; !ok && len(c.m) >= maxCached {
		for k := range c.m { // full: forget one (map order is random)
			delete(c.m, k)
			break
		}
	}
	c.m[e.Key] = cached{e.State, e.Version}
}

func (c *entityCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}
