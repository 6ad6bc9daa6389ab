// Package proxy owns one client connection's path through the load
// balancer, as one straight line (session.serve): prepare (PROXY header,
// TLS, WebSocket) → inspect the CONNECT → admit (limits) → connect a server
// (upstream.Connect: a lease) → relay → finish (access log, metrics, lease
// released), which every connection reaches exactly once, panics included.
// It also keeps the table of live connections and the connection metrics.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lbauth"
	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/ratelog"
	"github.com/mqlb/mqlb/internal/upstream"
)

// Runtime is one config generation: everything a new connection needs,
// from how its listener prepares it to the upstream it goes to. It is
// immutable once built; a reload builds a new one and swaps one pointer,
// and a connection keeps the one it started with from accept to close.
type Runtime struct {
	Upstreams *upstream.Set
	Limits    config.Limits
	AccessLog *AccessLog
	routes    map[string]Route // by listener key
	Auth      *lbauth.Gate     // nil: no authentication at the load balancer
	limiter   *ipLimiter
}

// Route is what one listener does with its connections in a generation:
// its settings and its upstream, resolved when the runtime is built.
type Route struct {
	Listener *listener.Settings
	Upstream *upstream.Upstream
}

// NewRuntime assembles a runtime; routes maps listener keys to settings,
// whose upstream must be in ups. prev (may be nil) lends its per-IP rate
// limiter when the limits did not change, so a reload does not reset buckets.
func NewRuntime(ups *upstream.Set, routes map[string]*listener.Settings, limits config.Limits, alog *AccessLog, prev *Runtime) (*Runtime, error) {
	rt := &Runtime{Upstreams: ups, Limits: limits, AccessLog: alog, routes: make(map[string]Route, len(routes))}
	for key, set := range routes {
		u := ups.Get(set.Upstream)
		if u == nil {
			return nil, fmt.Errorf("listener %s: no upstream %q", set.Name, set.Upstream)
		}
		rt.routes[key] = Route{Listener: set, Upstream: u}
	}
	if limits.ConnectRatePerIP > 0 {
		if prev != nil && prev.limiter != nil && prev.limiter.same(limits) {
			rt.limiter = prev.limiter
		} else {
			rt.limiter = newIPLimiter(limits)
		}
	}
	return rt, nil
}

// WithUpstreams returns a runtime like rt but with another upstream set
// (a runtime change: servers added, removed or re-weighted), its listeners
// resolved again.
func (rt *Runtime) WithUpstreams(ups *upstream.Set) (*Runtime, error) {
	routes := make(map[string]*listener.Settings, len(rt.routes))
	for key, r := range rt.routes {
		routes[key] = r.Listener
	}
	next, err := NewRuntime(ups, routes, rt.Limits, rt.AccessLog, rt)
	if err != nil {
		return nil, err
	}
	next.Auth = rt.Auth
	return next, nil
}

// Route returns the route of the listener with this key.
func (rt *Runtime) Route(key string) (Route, bool) {
	r, ok := rt.routes[key]
	return r, ok
}

// Proxy handles client connections with the current runtime.
type Proxy struct {
	rt      atomic.Pointer[Runtime]
	conns   Table
	metrics *Metrics
	active  atomic.Int64 // client connections in any phase
	wg      sync.WaitGroup
	wgMu    sync.Mutex // orders Handle's wg.Add before Shutdown's wg.Wait
	closing bool       // Shutdown has begun: Handle turns connections away
	ctx     context.Context
	cancel  context.CancelFunc
	log     *slog.Logger
	noisy   *ratelog.Log
	gate    listener.Gate // per-address and pending counts, from accept
}

// New returns a proxy using rt.
func New(rt *Runtime, m *Metrics, log *slog.Logger) *Proxy {
	p := &Proxy{metrics: m, log: log, noisy: ratelog.New(time.Second)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.rt.Store(rt)
	return p
}

// Swap installs a new runtime and returns the old one.
func (p *Proxy) Swap(rt *Runtime) *Runtime { return p.rt.Swap(rt) }

// Runtime returns the current runtime.
func (p *Proxy) Runtime() *Runtime { return p.rt.Load() }

// Conns returns the live connection table.
func (p *Proxy) Conns() *Table { return &p.conns }

// Pending returns client connections in their handshake.
func (p *Proxy) Pending() int { return p.gate.Pending() }

// Active returns client connections in any phase.
func (p *Proxy) Active() int64 { return p.active.Load() }

// Handle serves one connection accepted on the listener with this key. It
// runs in its own goroutine, which ends once the connection is relayed:
// from then on the relay owns it (with no goroutine while idle) and
// finishes it when it ends.
func (p *Proxy) Handle(key string, tcp net.Conn) {
	// A connection accepted just before its listener closed may get here
	// after Shutdown began to wait: it is closed, as if never accepted
	// (a WaitGroup must not be added to from zero while waited on).
	p.wgMu.Lock()
	if p.closing {
		p.wgMu.Unlock()
		tcp.Close()
		return
	}
	p.wg.Add(1)
	p.wgMu.Unlock()
	n := p.active.Add(1)
	rt := p.rt.Load() // the one generation this connection sees
	c := &Conn{rt: rt, p: p, start: time.Now()}
	c.setRemote(listener.RemoteAddrPort(tcp)) // unmapped; prepare may learn another from a PROXY header
	s := &session{p: p, c: c, conn: tcp, over: overLimit(n, rt.Limits)}
	defer s.recoverPanic() // counted above, so that a panic is accounted for too
	if s.enter(key) && s.serve() {
		return
	}
	s.finish()
}

func overLimit(n int64, l config.Limits) bool {
	return l.MaxConnections > 0 && n > int64(l.MaxConnections)
}

// Shutdown waits for open connections to end until ctx is done, then closes
// the rest. Listeners must be closed first.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.wgMu.Lock()
	p.closing = true
	p.wgMu.Unlock()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.cancel()
	n := p.conns.CloseAll()
	m := p.gate.ClosePending()
	p.log.Info("shutdown grace period over; closed open connections", "connections", n, "handshakes", m)
	<-done
	return ctx.Err()
}
