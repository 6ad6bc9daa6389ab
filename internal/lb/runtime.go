package lb

import (
	"context"
	"fmt"

	"github.com/mqlb/mqlb/internal/admin"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/upstream"
)

var _ admin.Runtime = (*LB)(nil)

// AddServer implements admin.Runtime: the server joins upstream u for new
// connections (health checks decide when it takes them).
func (l *LB) AddServer(ctx context.Context, u string, s config.Server) error {
	if s.Name == "" {
		s.Name = s.Address
	}
	if s.Weight == 0 {
		s.Weight = 1
	}
	if s.State == "" {
		s.State = "enabled"
	}
	if err := config.ServerError(s.Name, s.Address); err != nil {
		return fmt.Errorf("%w: %v", admin.ErrBadRequest, err) // said as for a request, not a config file
	}
	return l.change(ctx, serverRef{u, s.Name}, func(ov *override, file *config.Server) error {
		if l.hasServer(u, s.Name) {
			return fmt.Errorf("%w: upstream %s already has a server %q", admin.ErrConflict, u, s.Name)
		}
		if file == nil {
			*ov = override{add: &s}
			return nil
		}
		// The file has it and a runtime remove took it out: put it back.
		if file.Address != s.Address {
			return fmt.Errorf("%w: server %q is in the config file with address %s; re-add it with that address or edit the file", admin.ErrConflict, s.Name, file.Address)
		}
		*ov = override{base: file}
		if s.Weight != file.Weight {
			ov.weight = s.Weight
		}
		return nil
	}, "server added", "address", s.Address, "weight", s.Weight)
}

// RemoveServer implements admin.Runtime: no new connections go to the
// server; its connections stay until they close (or are evacuated).
func (l *LB) RemoveServer(ctx context.Context, u, name string) error {
	return l.change(ctx, serverRef{u, name}, func(ov *override, file *config.Server) error {
		if !l.hasServer(u, name) {
			return fmt.Errorf("%w: no server %q in upstream %s", admin.ErrNotFound, name, u)
		}
		if len(l.cfg.Upstreams[u].Servers) == 1 {
			return fmt.Errorf("%w: %s is upstream %s's last server; disable it instead", admin.ErrConflict, name, u)
		}
		*ov = override{base: file, removed: true}
		return nil
	}, "server removed")
}

// SetWeight implements admin.Runtime.
func (l *LB) SetWeight(ctx context.Context, u, name string, weight int) error {
	if weight < 1 || weight > 256 {
		return fmt.Errorf("%w: want a weight from 1 to 256, got %d", admin.ErrBadRequest, weight)
	}
	return l.change(ctx, serverRef{u, name}, func(ov *override, file *config.Server) error {
		if !l.hasServer(u, name) {
			return fmt.Errorf("%w: no server %q in upstream %s", admin.ErrNotFound, name, u)
		}
		switch {
		case ov.add != nil: // added at runtime: change what was added
			a := *ov.add
			a.Weight = weight
			ov.add = &a
		default:
			*ov = override{base: file, weight: weight}
		}
		return nil
	}, "server weight set", "weight", weight)
}

func (l *LB) hasServer(u, name string) bool {
	for _, s := range l.cfg.Upstreams[u].Servers {
		if s.Name == name {
			return true
		}
	}
	return false
}

// change applies one runtime change: the overrides with it are laid over
// the config file and the upstreams rebuilt as a reload would (servers keep
// their state; policies take over from the old ones), without touching
// listeners or connections. The log line names who asked (admin.Remote).
func (l *LB) change(ctx context.Context, r serverRef, edit func(ov *override, file *config.Server) error, msg string, args ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Upstreams[r.upstream] == nil {
		return fmt.Errorf("%w: no upstream %q", admin.ErrNotFound, r.upstream)
	}
	ov := l.ov.clone()
	o := ov[r]
	if err := edit(&o, fileServer(l.base, r)); err != nil {
		return err
	}
	ov[r] = o
	if o.add == nil && !o.removed && o.weight == 0 || o.removed && o.base == nil {
		delete(ov, r) // back to the file, or a runtime-added server removed
	}
	eff, ov, _ := ov.apply(l.base) // the file is the same: nothing is dropped
	eff.Lines = nil                // the file's line numbers do not fit the changed server lists
	if err := eff.Validate(); err != nil {
		return fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	ups, err := upstream.Build(eff, l.ups, l.coll.ObserveCheck, l.log)
	if err != nil {
		return fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	rt, err := l.proxy.Runtime().WithUpstreams(ups)
	if err != nil {
		return fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	ups.Start()
	l.proxy.Swap(rt)
	l.ups.Stop()
	l.coll.Forget(l.ups, ups)
	l.ups, l.cfg, l.ov = ups, eff, ov
	l.log.Info("runtime change: "+msg, append([]any{"upstream", r.upstream, "server", r.server}, append(args, "remote", admin.Remote(ctx))...)...)
	return nil
}
