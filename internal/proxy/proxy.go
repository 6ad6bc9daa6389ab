// Package proxy owns one client connection's path through the load
// balancer: prepare (PROXY header, TLS) → inspect the CONNECT → admit
// (connection limit, per-IP rate) → pick and connect a server (PROXY header
// out, CONNECT replayed, CONNACK awaited, retries) → relay → access log. It
// also keeps the table of live connections and the connection metrics.
package proxy

import (
	"context"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lbauth"
	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/upstream"
)

// Runtime is one config generation: what a new connection needs. It is
// immutable once built; a reload builds a new one and swaps it in, and
// connections keep the one they started with.
type Runtime struct {
	Upstreams *upstream.Set
	Limits    config.Limits
	AccessLog *AccessLog
	Auth      *lbauth.Gate // nil: no authentication at the load balancer
	limiter   *ipLimiter
}

// NewRuntime assembles a runtime. prev (may be nil) lends its per-IP rate
// limiter when the limits did not change, so a reload does not reset buckets.
func NewRuntime(ups *upstream.Set, limits config.Limits, alog *AccessLog, prev *Runtime) *Runtime {
	rt := &Runtime{Upstreams: ups, Limits: limits, AccessLog: alog}
	if limits.ConnectRatePerIP > 0 {
		if prev != nil && prev.limiter != nil && prev.limiter.same(limits) {
			rt.limiter = prev.limiter
		} else {
			rt.limiter = newIPLimiter(limits)
		}
	}
	return rt
}

// Proxy handles client connections with the current runtime.
type Proxy struct {
	rt      atomic.Pointer[Runtime]
	conns   Table
	metrics *Metrics
	active  atomic.Int64 // client connections in any phase
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	log     *slog.Logger
	noisy   *rateLog
}

// New returns a proxy using rt.
func New(rt *Runtime, m *Metrics, log *slog.Logger) *Proxy {
	p := &Proxy{metrics: m, log: log, noisy: newRateLog(time.Second)}
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

// Active returns client connections in any phase.
func (p *Proxy) Active() int64 { return p.active.Load() }

// Handle serves one accepted client connection. It is the listener's
// handler and runs in its own goroutine, which ends once the connection is
// relayed: from then on the relay owns it (with no goroutine while idle) and
// finishes the session when it ends.
func (p *Proxy) Handle(l *listener.Listener, c *net.TCPConn) {
	defer p.recoverPanic(c)
	p.wg.Add(1)
	n := p.active.Add(1)
	rt := p.rt.Load()
	s := &session{p: p, rt: rt, set: l.Settings(), tcp: c, over: overLimit(n, rt.Limits)}
	s.rec.Start = time.Now()
	s.rec.Listener = s.set.Name
	s.rec.Remote = addrOf(c.RemoteAddr())
	if !s.serve() {
		s.end()
	}
}

// recoverPanic keeps a bug in one connection's path from taking the process
// (and every other connection) down: the connection is closed and the panic
// logged with its stack.
func (p *Proxy) recoverPanic(c *net.TCPConn) {
	if v := recover(); v != nil {
		c.Close()
		p.log.Error("panic serving a connection; closed it", "remote", addrOf(c.RemoteAddr()), "panic", v, "stack", string(debug.Stack()))
	}
}

// end closes the client connection and accounts for it: metrics, access log,
// shutdown wait group.
func (s *session) end() {
	s.tcp.Close()
	s.rec.Duration = time.Since(s.rec.Start)
	s.p.metrics.result(s.rec.Listener, s.rec.Result)
	s.rt.AccessLog.Write(&s.rec)
	s.p.active.Add(-1)
	s.p.wg.Done()
}

func overLimit(n int64, l config.Limits) bool {
	return l.MaxConnections > 0 && n > int64(l.MaxConnections)
}

// Shutdown waits for open connections to end until ctx is done, then closes
// the rest. Listeners must be closed first.
func (p *Proxy) Shutdown(ctx context.Context) error {
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
	p.log.Info("shutdown grace period over; closed open connections", "connections", n)
	<-done
	return ctx.Err()
}

func addrOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
