package lb

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/mqlb/mqlb/internal/config"
)

// overrides are the server changes made through the runtime API (add,
// remove, weight). Like HAProxy's server-state file they are laid over the
// config file on every reload, so a reload of an unchanged file keeps them;
// where the file itself changed a server since the override was made, the
// file wins and the override is dropped (and logged).
type overrides map[serverRef]override

type serverRef struct{ upstream, server string }

// override is one server's runtime change. base is the file's entry for the
// server when the change was made (nil when the file did not have it).
type override struct {
	base    *config.Server
	add     *config.Server // added at runtime
	removed bool
	weight  int // 0: the file's
}

func (o overrides) clone() overrides { return maps.Clone(o) }

// fileServer returns cfg's entry for the server, or nil.
func fileServer(cfg *config.Config, r serverRef) *config.Server {
	u := cfg.Upstreams[r.upstream]
	if u == nil {
		return nil
	}
	for i := range u.Servers {
		if u.Servers[i].Name == r.server {
			s := u.Servers[i]
			return &s
		}
	}
	return nil
}

func sameServer(a, b *config.Server) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// apply returns a copy of file with the overrides laid over it, the
// overrides still in force, and the servers of those it dropped because the
// file changed them.
func (o overrides) apply(file *config.Config) (*config.Config, overrides, []serverRef) {
	eff := cloneConfig(file)
	kept := overrides{}
	var dropped []serverRef
	for _, r := range slices.SortedFunc(maps.Keys(o), cmpRef) {
		ov := o[r]
		u := eff.Upstreams[r.upstream]
		if u == nil || !sameServer(ov.base, fileServer(file, r)) {
			dropped = append(dropped, r)
			continue
		}
		kept[r] = ov
		i := slices.IndexFunc(u.Servers, func(s config.Server) bool { return s.Name == r.server })
		switch {
		case ov.removed && i >= 0:
			u.Servers = slices.Delete(u.Servers, i, i+1)
		case ov.add != nil && i < 0:
			u.Servers = append(u.Servers, *ov.add)
		case ov.weight > 0 && i >= 0:
			u.Servers[i].Weight = ov.weight
		}
	}
	return eff, kept, dropped
}

// logDropped warns about the runtime changes a reload dropped, and returns
// the warnings.
func logDropped(log *slog.Logger, dropped []serverRef) []string {
	var out []string
	for _, r := range dropped {
		log.Warn("runtime change dropped: the config file changed this server", "upstream", r.upstream, "server", r.server)
		out = append(out, fmt.Sprintf("runtime change dropped: the config file changed server %s of upstream %s", r.server, r.upstream))
	}
	return out
}

func cmpRef(a, b serverRef) int {
	return cmp.Or(cmp.Compare(a.upstream, b.upstream), cmp.Compare(a.server, b.server))
}

// cloneConfig copies cfg deeply enough that the upstreams' server lists
// may be changed.
func cloneConfig(cfg *config.Config) *config.Config {
	c := *cfg
	c.Upstreams = make(map[string]*config.Upstream, len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		cu := *u
		cu.Servers = slices.Clone(u.Servers)
		c.Upstreams[name] = &cu
	}
	return &c
}
