package lb

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lbauth"
	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/proxy"
	"github.com/mqlb/mqlb/internal/upstream"
)

// Reload reads the config file again and applies it (SIGHUP, POST /-/reload).
// An invalid file is refused with the error, and the running config stays.
func (l *LB) Reload() error {
	_, err := l.ReloadWarnings()
	return err
}

// ReloadWarnings is Reload, and returns what the reload it made warned
// about in the log (POST /-/reload answers them): certificates expired, not
// yet valid or unusable with tls.ciphers, runtime changes the file
// overrode, settings that change on restart only.
func (l *LB) ReloadWarnings() ([]string, error) {
	if l.file == "" {
		return nil, errors.New("no config file to reload (the config was built in code)")
	}
	cfg, err := config.Load(l.file)
	if err != nil {
		l.log.Error("reload refused: the running config stays", "file", l.file, "error", err)
		l.metrics.reloaded(err)
		return nil, err
	}
	cfg.File = l.file
	warnings, err := l.apply(cfg)
	l.metrics.reloaded(err)
	return warnings, err
}

// Apply switches to cfg without touching established connections: servers
// are added or removed, policies and limits change for new connections,
// listeners are opened, updated or closed. If anything cannot be built
// (a certificate, a port), nothing changes.
//
// Runtime API changes (overrides.go) are laid over cfg.
func (l *LB) Apply(file *config.Config) error {
	_, err := l.apply(file)
	return err
}

// apply is Apply, returning what it warned about.
func (l *LB) apply(file *config.Config) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cfg, ov, dropped := l.ov.apply(file)
	if l.admin != nil && cfg.Admin.Token != l.adminRun.Token {
		if err := l.admin.CheckToken(cfg.Admin.Token); err != nil {
			return nil, l.refuse(err)
		}
	}
	ups, err := upstream.Build(cfg, l.ups, l.coll.ObserveCheck, l.log)
	if err != nil {
		return nil, l.refuse(err)
	}
	plan, err := l.planListeners(cfg)
	if err != nil {
		return nil, l.refuse(err)
	}
	alog, err := proxy.OpenAccessLog(cfg.AccessLog)
	if err != nil {
		plan.abort()
		return nil, l.refuse(err)
	}
	gate, err := lbauth.New(cfg, l.authMetrics, l.log)
	if err != nil {
		plan.abort()
		alog.Close()
		return nil, l.refuse(err)
	}
	rt, err := proxy.NewRuntime(ups, plan.routes, cfg.Limits, alog, l.proxy.Runtime())
	if err != nil {
		plan.abort()
		alog.Close()
		return nil, l.refuse(err)
	}
	rt.Auth = gate
	// Commit: nothing below can fail. One swap changes what every new
	// connection sees; the old runtime's access log is closed by the GC
	// once its connections end.
	ups.Start()
	l.proxy.Swap(rt)
	plan.commit(l)
	l.ups.Stop()
	l.coll.Forget(l.ups, ups)
	l.ups = ups
	warnings := l.applyAdmin(cfg.Admin)
	if l.level != nil {
		l.level.Set(cfg.Log.SlogLevel())
	}
	warnings = append(warnings, l.checkCerts(cfg)...)
	warnings = append(warnings, l.setScheduling(cfg.Process)...)
	l.cfg, l.base, l.ov = cfg, file, ov
	warnings = append(warnings, logDropped(l.log, dropped)...)
	l.log.Info("config reloaded", "file", cfg.File, "listeners", len(l.listeners), "upstreams", len(cfg.Upstreams))
	return warnings, nil
}

// applyAdmin applies a new admin token at once (rotating a leaked one);
// the admin server's other settings change on restart, and every reload
// that finds them changed says which (the warning is returned too).
func (l *LB) applyAdmin(a config.Admin) []string {
	if l.admin == nil {
		if a.Address != "" {
			l.log.Warn("admin settings change on restart, not on reload: the admin API is off", "admin.address", a.Address)
			return []string{"admin settings change on restart, not on reload: the admin API is off (admin.address " + a.Address + ")"}
		}
		return nil
	}
	if a.Token != l.adminRun.Token {
		_ = l.admin.SetToken(a.Token) // checked before the commit
		l.adminRun.Token = a.Token
		l.log.Info("admin token replaced")
	}
	var keys []string
	if a.Address != l.adminRun.Address {
		keys = append(keys, "admin.address")
	}
	if !slices.Equal(a.AllowedHosts, l.adminRun.AllowedHosts) {
		keys = append(keys, "admin.allowed_hosts")
	}
	if a.Insecure != l.adminRun.Insecure {
		keys = append(keys, "admin.insecure")
	}
	if len(keys) == 0 {
		return nil
	}
	l.log.Warn("admin settings change on restart, not on reload", "changed", strings.Join(keys, ", "), "running_address", l.adminRun.Address)
	return []string{"admin settings change on restart, not on reload: " + strings.Join(keys, ", ")}
}

func (l *LB) refuse(err error) error {
	l.log.Error("reload refused: the running config stays", "error", err)
	return err
}

// listenerPlan is the change to listeners a config makes.
type listenerPlan struct {
	routes map[string]*listener.Settings // by listenKey: every configured listener
	open   map[string]*listener.Listener // newly bound
	close  map[string]*listener.Listener // no longer configured
}

func (l *LB) planListeners(cfg *config.Config) (*listenerPlan, error) {
	p := &listenerPlan{routes: map[string]*listener.Settings{}, open: map[string]*listener.Listener{},
		close: map[string]*listener.Listener{}}
	for i, lc := range cfg.Listeners {
		key := listenKey(lc)
		s, err := listener.NewSettings(lc)
		if err == nil && l.listeners[key] == nil {
			var ln *listener.Listener
			if ln, err = listener.Listen(lc.Address, lc.Name, l.log); err == nil {
				p.open[key] = ln
			}
		}
		if err != nil {
			p.abort()
			return nil, fmt.Errorf("listeners[%d] %s: %w", i, lc.Name, err)
		}
		p.routes[key] = s
	}
	for key, ln := range l.listeners {
		if p.routes[key] == nil {
			p.close[key] = ln
		}
	}
	return p, nil
}

func (p *listenerPlan) abort() {
	for _, ln := range p.open {
		ln.Close()
	}
}

// commit starts the new listeners and closes the removed ones, after the
// runtime with their routes was swapped in.
func (p *listenerPlan) commit(l *LB) {
	for key, ln := range p.open {
		l.listeners[key] = ln
		if l.serving.Load() {
			l.serve(key, ln)
		}
	}
	for key, ln := range p.close {
		ln.Close() // its accepted connections go on
		delete(l.listeners, key)
		l.log.Info("listener closed by reload: its connections stay", "address", ln.Addr().String())
	}
}
