// Package upstream owns the broker servers behind the load balancer: their
// state (health, operator drain/disable, connection counts) in atomics,
// active health checks with rise/fall thresholds, and dialling with retries
// through the upstream's balance policy. A config reload builds a new Set
// that reuses the *Server of every server whose upstream, name and address
// are unchanged, so health, counts and operator state survive it. A server
// removed while it still has connections is kept aside (Removed) until they
// close, and a server added back with its name and address is that same
// *Server, its connections counted on it again.
package upstream

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/config"
)

// Upstream is a named group of servers and the policy that chooses among them.
type Upstream struct {
	Name    string
	Servers []*Server
	Policy  balance.Policy

	// removed are servers taken out of the upstream (reload, runtime API)
	// that still had connections when it was built: their leases point to
	// them, so they keep the count until the connections close, and a
	// server added back with the same name and address is the same one.
	removed []*Server

	cfg     config.Upstream
	byName  map[string]*Server
	checks  *checks
	log     *slog.Logger
	onCheck CheckObserver
	queued  atomic.Int64 // clients waiting under max_connect_rate
}

// CheckObserver is told the outcome of every active check (for metrics).
type CheckObserver func(s *Server, d time.Duration, err error)

// Set is every upstream of one config generation.
type Set struct {
	byName map[string]*Upstream
}

// Get returns the upstream with this name, or nil.
func (s *Set) Get(name string) *Upstream { return s.byName[name] }

// All returns the upstreams sorted by name.
func (s *Set) All() []*Upstream {
	out := make([]*Upstream, 0, len(s.byName))
	for _, u := range s.byName {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Build makes the upstreams of cfg. Servers that prev already had (same
// upstream, name and address) are reused with their state; policies get the
// previous policy so sticky tables survive. Nothing starts until Start.
func Build(cfg *config.Config, prev *Set, onCheck CheckObserver, log *slog.Logger) (*Set, error) {
	set := &Set{byName: map[string]*Upstream{}}
	for _, name := range cfg.UpstreamNames() {
		uc := cfg.Upstreams[name]
		var old *Upstream
		if prev != nil {
			old = prev.byName[name]
		}
		u, err := build(name, uc, old, onCheck, log)
		if err != nil {
			return nil, err
		}
		set.byName[name] = u
	}
	if prev != nil {
		logRemoved(prev, set, log)
	}
	return set, nil
}

// logRemoved says which servers of prev the new set no longer has (or has
// at another address): they take no new connection, and their open ones
// stay until they close.
func logRemoved(prev, set *Set, log *slog.Logger) {
	for name, old := range prev.byName {
		u := set.byName[name]
		for _, s := range old.Servers {
			if u == nil || u.byName[s.name] != s {
				log.Info("server removed: its connections stay until they close", "upstream", name, "server", s.name, "address", s.addr, "connections", s.Active())
			}
		}
	}
}

func build(name string, uc *config.Upstream, old *Upstream, onCheck CheckObserver, log *slog.Logger) (*Upstream, error) {
	u := &Upstream{Name: name, cfg: *uc, byName: map[string]*Server{}, log: log.With("upstream", name), onCheck: onCheck}
	for i, sc := range uc.Servers {
		s, back := reuse(old, sc)
		switch {
		case back:
			// removed earlier and added back while its connections live:
			// they count on it again; otherwise it joins as an added server
			s.rejoin(uc.HealthCheck.Type != "none")
			applyState(s, sc.State)
			s.log.Info("server added back: its open connections count on it again", "connections", s.Active())
		case s == nil:
			s = newServer(name, sc.Name, sc.Address, sc.Weight, log)
			applyState(s, sc.State)
			if old != nil {
				s.cameUp() // added to a running upstream: slow start
				if uc.HealthCheck.Type != "none" {
					// and checked before it takes a client
					s.healthy.Store(false)
					s.unchecked.Store(true)
				}
			}
		case prevState(old, sc.Name) != sc.State:
			applyState(s, sc.State) // the config's state changed: it wins
		}
		s.weight.Store(int32(uc.Servers[i].Weight))
		s.setPace(uc.MaxConnectRate)
		u.Servers = append(u.Servers, s)
		u.byName[s.name] = s
	}
	if old != nil {
		u.keepRemoved(old)
	}
	bs := make([]balance.Server, len(u.Servers))
	for i, s := range u.Servers {
		bs[i] = s
	}
	opts := balance.Options{LoadFactor: uc.LoadFactor, StickyKey: uc.Sticky.Key,
		StickyTTL: uc.Sticky.TTL.D(), StickySize: uc.Sticky.Size}
	if old != nil {
		opts.Prev = old.Policy
	}
	p, err := balance.New(uc.Balance, bs, opts)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", name, err)
	}
	u.Policy = p
	return u, nil
}

// reuse returns old's server with the same name and address, if any, and
// whether it is one removed earlier (back). A weight change keeps the
// server (weight is not part of its identity).
func reuse(old *Upstream, sc config.Server) (s *Server, back bool) {
	if old == nil {
		return nil, false
	}
	if s := old.byName[sc.Name]; s != nil && s.addr == sc.Address {
		return s, false
	}
	for _, s := range old.removed {
		if s.name == sc.Name && s.addr == sc.Address {
			return s, true
		}
	}
	return nil, false
}

// keepRemoved sets aside old's servers that u no longer has (removed, or
// replaced by a server of the same name at another address) and that still
// have connections, with those old had set aside; the others are
// forgotten. Clients waiting for the turn of a server leaving pick again.
func (u *Upstream) keepRemoved(old *Upstream) {
	for _, s := range old.Servers {
		if u.byName[s.name] != s {
			s.releaseWaiters()
		}
	}
	for _, s := range slices.Concat(old.Servers, old.removed) {
		if u.byName[s.name] != s && s.Active() > 0 {
			u.removed = append(u.removed, s)
		}
	}
}

// Removed returns the servers removed from the upstream (by a reload or
// the runtime API) whose connections are still open, by name: they take
// no new connection; Active, Total and the bytes are theirs as before.
// Their connections' leases count on them until they close; once none is
// left, the server is forgotten at the next change of the upstreams.
func (u *Upstream) Removed() []*Server {
	out := make([]*Server, 0, len(u.removed))
	for _, s := range u.removed {
		if s.Active() > 0 {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b *Server) int { return strings.Compare(a.name, b.name) })
	return out
}

// RemovedServer returns the removed server with this name that still has
// connections (see Removed), or nil; when servers of that name were
// removed at several addresses, the one with the most connections.
func (u *Upstream) RemovedServer(name string) *Server {
	var best *Server
	for _, s := range u.removed {
		if s.name == name && s.Active() > 0 && (best == nil || s.Active() > best.Active()) {
			best = s
		}
	}
	return best
}

func prevState(old *Upstream, name string) string {
	for _, sc := range old.cfg.Servers {
		if sc.Name == name {
			return sc.State
		}
	}
	return ""
}

func applyState(s *Server, state string) {
	switch state {
	case "drain":
		s.admin.Store(adminDrain)
	case "disabled":
		s.admin.Store(adminDisabled)
	default:
		s.admin.Store(adminEnabled)
	}
}

// Server returns the server with this name, or nil.
func (u *Upstream) Server(name string) *Server { return u.byName[name] }

// Config returns the upstream's configuration.
func (u *Upstream) Config() config.Upstream { return u.cfg }

// Start begins health checks of every upstream. Calling it again does nothing.
func (s *Set) Start() {
	for _, u := range s.byName {
		if u.checks == nil {
			u.checks = startChecks(u)
		}
	}
}

// Stop ends health checks and waits for them.
func (s *Set) Stop() {
	for _, u := range s.byName {
		if u.checks != nil {
			u.checks.stop()
		}
	}
}
