// Package lb assembles the load balancer from a config: listeners, the
// proxy and its runtime (upstreams, limits, access log), the admin API.
// It owns the lifecycle: reload (build new, swap, retire old — established
// connections are never touched) and graceful shutdown (stop accepting,
// wait up to the grace period, close the rest).
package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqlb/mqlb/internal/admin"
	"github.com/mqlb/mqlb/internal/adminhttp"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lbauth"
	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/procsched"
	"github.com/mqlb/mqlb/internal/proxy"
	"github.com/mqlb/mqlb/internal/rebalance"
	"github.com/mqlb/mqlb/internal/upstream"
)

// LB is a running load balancer.
type LB struct {
	file        string // config file for Reload ("" when built from a Config)
	mu          sync.Mutex
	cfg         *config.Config // what runs: the file's config with the runtime overrides
	base        *config.Config // the file's config
	ov          overrides      // runtime API changes (runtime.go)
	ups         *upstream.Set
	listeners   map[string]*listener.Listener // by listenKey
	proxy       *proxy.Proxy
	coll        *proxy.Collector
	authMetrics *lbauth.Metrics
	admin       *admin.Server
	adminRun    config.Admin // the admin settings the admin server runs with (the token follows reloads)
	metrics     *lbMetrics
	moves       *rebalance.Manager // rebalancing and evacuations
	serving     atomic.Bool
	serveWG     sync.WaitGroup
	log         *slog.Logger
	level       *slog.LevelVar
	process     bool   // Options.Process
	scheduling  string // the policy set (process.scheduling), "" before the first
	// Registry holds the LB's metrics (exported on /metrics).
	Registry *prometheus.Registry
}

// Options for New.
type Options struct {
	File  string         // where cfg came from, for Reload
	Log   *slog.Logger   // process log
	Level *slog.LevelVar // its level, changed by reloads (may be nil)
	// Process: the load balancer is the process (mqlb run), so the
	// process section applies to it (the scheduling policy of every
	// thread). Off for a load balancer inside another program (tests).
	Process bool
}

// New binds every listener and the admin address and builds the runtime.
// Nothing is served until Run.
func New(cfg *config.Config, o Options) (*LB, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	l := &LB{file: o.File, cfg: cfg, base: cfg, ov: overrides{}, listeners: map[string]*listener.Listener{}, log: o.Log, level: o.Level,
		process: o.Process, Registry: prometheus.NewRegistry()}
	l.proxy = proxy.New(nil, proxy.NewMetrics(), o.Log)
	l.authMetrics = lbauth.NewMetrics()
	l.coll = proxy.NewCollector(l.proxy)
	ups, err := upstream.Build(cfg, nil, l.coll.ObserveCheck, o.Log)
	if err != nil {
		return nil, err
	}
	alog, err := proxy.OpenAccessLog(cfg.AccessLog)
	if err != nil {
		return nil, err
	}
	gate, err := lbauth.New(cfg, l.authMetrics, o.Log)
	if err != nil {
		return nil, err
	}
	plan, err := l.planListeners(cfg)
	if err != nil {
		return nil, err
	}
	rt, err := proxy.NewRuntime(ups, plan.routes, cfg.Limits, alog, nil)
	if err != nil {
		plan.abort()
		return nil, err
	}
	rt.Auth = gate
	l.ups = ups
	l.proxy.Swap(rt)
	plan.commit(l)
	l.moves = rebalance.New(l.Upstreams, l.proxy.Conns().Movable, o.Log)
	l.Registry.MustRegister(l.coll, l.authMetrics, l.moves.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l.metrics = newLBMetrics(l.Registry)
	l.checkCerts(cfg)
	l.setScheduling(cfg.Process)
	if cfg.Admin.Address != "" {
		l.admin, l.adminRun = admin.New(l, adminOptions(cfg.Admin), l.Registry, o.Log), cfg.Admin
		if err := l.admin.Listen(cfg.Admin.Address); err != nil {
			l.closeListeners()
			return nil, fmt.Errorf("admin.address: %w", err)
		}
	}
	return l, nil
}

// setScheduling puts every thread of the process under the configured
// policy, when the load balancer is the process and the policy changed. A
// policy that cannot be set (a seccomp filter, a non-Linux system) is
// logged (and the warning returned) and the process goes on as it is.
func (l *LB) setScheduling(p config.Process) []string {
	if !l.process || p.Scheduling == l.scheduling {
		return nil
	}
	r, err := procsched.Set(procsched.Policy(p.Scheduling))
	if err != nil {
		l.log.Warn("process.scheduling not applied", "policy", p.Scheduling, "error", err)
		return []string{fmt.Sprintf("process.scheduling %s not applied: %v", p.Scheduling, err)}
	}
	l.scheduling = p.Scheduling
	l.log.Info("scheduling policy set", "policy", p.Scheduling, "threads", r.Set, "left_as_set_outside", r.Foreign)
	return nil
}

// listenKey identifies a listener across reloads: its address, so a renamed
// listener keeps its socket — or, for port 0 (tests), its name and address.
func listenKey(lc config.Listener) string {
	if strings.HasSuffix(lc.Address, ":0") {
		return lc.Name + "@" + lc.Address
	}
	return lc.Address
}

func (l *LB) closeListeners() {
	for _, ln := range l.listeners {
		ln.Close()
	}
}

// Run serves until ctx is done, then shuts down gracefully: listeners
// close at once, open connections get limits.shutdown_grace to finish.
func (l *LB) Run(ctx context.Context) error {
	l.serving.Store(true)
	l.mu.Lock()
	l.ups.Start()
	l.moves.Start()
	for key, ln := range l.listeners {
		l.serve(key, ln)
	}
	n := len(l.listeners)
	l.mu.Unlock()
	errc := make(chan error, 1)
	if l.admin != nil {
		go func() { errc <- l.admin.Serve() }()
	}
	l.log.Info("load balancer running", "listeners", n, "admin", l.AdminAddr())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("admin: %w", err)
	}
	return errors.Join(err, l.shutdown())
}

func (l *LB) serve(key string, ln *listener.Listener) {
	l.serveWG.Add(1)
	go func() {
		defer l.serveWG.Done()
		// A plain listener's connections are accepted straight onto the
		// relay's loops; one with TLS or WebSocket is read through Go's
		// poller. A reload that changes that later is still served: Prepare
		// moves a loop's connection to Go's poller when it needs to.
		if r, ok := l.proxy.Runtime().Route(key); ok && r.Listener.TLS == nil && r.Listener.WSPath == "" {
			ln.ServeLoop(func(c net.Conn) { l.proxy.Handle(key, c) })
			return
		}
		ln.Serve(func(c *net.TCPConn) { l.proxy.Handle(key, c) })
	}()
}

func (l *LB) shutdown() error {
	l.serving.Store(false)
	l.mu.Lock()
	l.closeListeners()
	grace := l.cfg.Limits.ShutdownGrace.D()
	l.mu.Unlock()
	l.serveWG.Wait()
	l.moves.Stop()
	l.log.Info("shutting down: waiting for open connections", "connections", l.proxy.Conns().Len(), "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	err := l.proxy.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		l.log.Info("shutdown grace over: remaining connections closed", "waited", time.Since(start).Round(time.Millisecond))
		err = nil // the remaining connections were closed; that is the documented outcome
	} else {
		l.log.Info("open connections all ended", "waited", time.Since(start).Round(time.Millisecond))
	}
	l.ups.Stop()
	l.proxy.Runtime().AccessLog.Close()
	if l.admin != nil {
		actx, acancel := context.WithTimeout(context.Background(), 2e9)
		defer acancel()
		err = errors.Join(err, l.admin.Shutdown(actx))
	}
	return err
}

// ListenerAddr returns the bound address of the listener with this name.
func (l *LB) ListenerAddr(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, ln := range l.listeners {
		if r, ok := l.proxy.Runtime().Route(key); ok && r.Listener.Name == name {
			return ln.Addr().String()
		}
	}
	return ""
}

// AdminAddr returns the admin API's bound address, or "".
func (l *LB) AdminAddr() string {
	if l.admin == nil {
		return ""
	}
	return l.admin.Addr()
}

// Upstreams implements admin.Backend.
func (l *LB) Upstreams() *upstream.Set { return l.proxy.Runtime().Upstreams }

// Connections implements admin.Backend.
func (l *LB) Connections() *proxy.Table { return l.proxy.Conns() }

// Serving implements admin.Backend.
func (l *LB) Serving() bool { return l.serving.Load() }

func adminOptions(a config.Admin) adminhttp.Options {
	return adminhttp.Options{Token: a.Token, AllowedHosts: a.AllowedHosts, Insecure: a.Insecure}
}

// Rebalance returns the manager of rebalancing and evacuations (for the
// admin API and mqlb up).
func (l *LB) Rebalance() *rebalance.Manager { return l.moves }
