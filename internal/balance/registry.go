package balance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Factory builds a policy over a fixed list of servers.
type Factory func(servers []Server, opts Options) (Policy, error)

// ErrUnknownPolicy is returned (wrapped) by New for a name nobody registered.
var ErrUnknownPolicy = errors.New("unknown policy")

var registry struct {
	sync.RWMutex
	m map[string]Factory
}

// Register makes a policy available to New under name. It panics if name is
// empty, f is nil or name is already registered.
func Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("balance: Register with empty name or nil factory")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic("balance: Register called twice for policy " + name)
	}
	if registry.m == nil {
		registry.m = make(map[string]Factory)
	}
	registry.m[name] = f
}

// New builds the policy registered as name. An unknown name is an error
// wrapping ErrUnknownPolicy that lists the known names, such as
// `unknown policy "clientid"; want one of client_id, least_conn, …`.
func New(name string, servers []Server, opts Options) (Policy, error) {
	registry.RLock()
	f := registry.m[name]
	registry.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("%w %q; want one of %s", ErrUnknownPolicy, name, strings.Join(Names(), ", "))
	}
	return f(servers, opts)
}

// Names returns the registered policy names, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
