// Package rebalance reshapes the load of an upstream while it runs: it
// decides which relayed connections to close so that their clients
// reconnect elsewhere (rebalancing after a server joined, came back or was
// re-weighted; evacuating a server) and paces the closes. It closes
// connections only through the narrow Conn view the load balancer gives
// it; where a reconnecting client lands is the balance policy's business.
package rebalance

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/upstream"
)

// Conn is what the mover sees of one relayed connection.
type Conn struct {
	Server string              // the server it is relayed to
	Of     *upstream.Server    // that server (a removed one too: its name may be taken again)
	Since  time.Time           // when the client connected
	Key    *balance.Conn       // what the policy placed it by
	Close  func(reason string) // ends it (both sides), logged with reason; the client reconnects
}

// The access log's reason for a connection closed to move it.
const (
	ReasonRebalanced = "rebalanced" // by the rebalancer
	ReasonEvacuated  = "evacuated"  // by an evacuation
)

// Source lists the live connections of an upstream, skipping those already
// being closed.
type Source func(upstream string) []Conn

// Manager runs rebalancing for every upstream that has it on, and the
// evacuations the admin API starts. It reads the current upstream set on
// every step, so config reloads apply as they happen.
type Manager struct {
	ups   func() *upstream.Set
	conns Source
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	movers  map[string]*mover      // by upstream: running rebalancers
	evacs   map[[2]string]*evacuee // by upstream, server
	moved   map[[2]string]*atomic.Uint64
	onMove  func(upstream, server string, at time.Time)
	stopped bool
}

// OnMove sets a function told of every connection closed to move it (for
// tests and measurements).
func (m *Manager) OnMove(f func(upstream, server string, at time.Time)) {
	m.mu.Lock()
	m.onMove = f
	m.mu.Unlock()
}

// New returns a manager over the upstreams ups returns and the
// connections conns lists. Nothing runs until Start.
func New(ups func() *upstream.Set, conns Source, log *slog.Logger) *Manager {
	m := &Manager{ups: ups, conns: conns, log: log, movers: map[string]*mover{},
		evacs: map[[2]string]*evacuee{}, moved: map[[2]string]*atomic.Uint64{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// checkEvery is how often the manager looks for upstreams whose
// rebalancing was switched on or off (by a reload).
const checkEvery = 500 * time.Millisecond

// Start begins watching the upstreams.
func (m *Manager) Start() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(checkEvery)
		defer t.Stop()
		for {
			m.startMovers()
			select {
			case <-m.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends every rebalancer and evacuation and waits for them.
func (m *Manager) Stop() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// startMovers starts a rebalancer for every upstream with rebalance.rate
// set that has none running (a rebalancer ends by itself when its upstream
// turns it off or goes away).
func (m *Manager) startMovers() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.ups().All() {
		if u.Config().Rebalance.Rate <= 0 || m.movers[u.Name] != nil || m.stopped {
			continue
		}
		mv := &mover{m: m, name: u.Name}
		m.movers[u.Name] = mv
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			mv.run()
			m.mu.Lock()
			delete(m.movers, mv.name)
			m.mu.Unlock()
		}()
	}
}

// upstream returns the current upstream with this name, or nil.
func (m *Manager) upstream(name string) *upstream.Upstream { return m.ups().Get(name) }

// count adds one connection moved off server of upstream.
func (m *Manager) count(upstream, server string) {
	k := [2]string{upstream, server}
	m.mu.Lock()
	c := m.moved[k]
	if c == nil {
		c = new(atomic.Uint64)
		m.moved[k] = c
	}
	f := m.onMove
	m.mu.Unlock()
	c.Add(1)
	if f != nil {
		f(upstream, server, time.Now())
	}
}

// prune forgets the count of every server keep says no longer exists
// (removed through the API or by a reload), so its series leaves /metrics
// with the server's other ones.
func (m *Manager) prune(keep func(upstream, server string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.moved {
		if !keep(k[0], k[1]) {
			delete(m.moved, k)
		}
	}
}

// Moved calls f with every (upstream, server, connections moved off it).
func (m *Manager) Moved(f func(upstream, server string, n uint64)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, c := range m.moved {
		f(k[0], k[1], c.Load())
	}
}

// pacer spaces events at least 1/rate apart: a timer never fires early, so
// no one-second window holds more than rate of them.
type pacer struct {
	last time.Time
}

// wait blocks until the next event may happen at perSecond, or ctx ends.
func (p *pacer) wait(ctx context.Context, perSecond float64) bool {
	next := p.last.Add(time.Duration(float64(time.Second) / perSecond))
	if d := time.Until(next); d > 0 && !sleep(ctx, d) {
		return false
	}
	p.last = time.Now()
	return ctx.Err() == nil
}

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
