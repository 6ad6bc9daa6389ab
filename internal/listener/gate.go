package listener

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
)

// Gate counts connections from the moment they are accepted: per client
// address, and those still in their handshake (PROXY header, TLS,
// WebSocket upgrade, the whole CONNECT) — what a client can hold without
// ever sending a complete CONNECT. One Gate serves every listener of a
// process; limits are passed per call, so a reload changes them at once.
type Gate struct {
	mu      sync.Mutex
	perIP   map[netip.Addr]int
	pending list.List // of *Ticket, oldest first
}

// Ticket is one connection's pass through the gate. Its storage is the
// caller's (the load balancer keeps it in its record of the connection);
// once the handshake is over it no longer refers to the connection.
type Ticket struct {
	g       *Gate
	c       net.Conn   // while pending: what eviction and ClosePending close
	ip      netip.Addr // counted against this address (invalid: not counted)
	elem    *list.Element
	evicted bool
}

// Enter admits a connection just accepted, with t as its ticket, counting
// it against ip (unless ip is invalid or maxPerIP is 0) and as pending. It
// reports false when ip already has maxPerIP connections. Over maxPending
// (0: no limit), the oldest pending connection is closed to make room: a
// handshake that is still not done after all the newer ones is the one to
// go (slowloris).
func (g *Gate) Enter(t *Ticket, c net.Conn, ip netip.Addr, maxPerIP, maxPending int) bool {
	*t = Ticket{g: g, c: c}
	g.mu.Lock()
	if !t.countIP(ip, maxPerIP) {
		g.mu.Unlock()
		return false
	}
	t.elem = g.pending.PushBack(t)
	var evict net.Conn
	if maxPending > 0 && g.pending.Len() > maxPending {
		oldest := g.pending.Remove(g.pending.Front()).(*Ticket)
		evict = oldest.c
		oldest.elem, oldest.c, oldest.evicted = nil, nil, true
	}
	g.mu.Unlock()
	if evict != nil {
		evict.Close()
	}
	return true
}

// countIP counts t against ip; g.mu is held.
func (t *Ticket) countIP(ip netip.Addr, max int) bool {
	if max <= 0 || !ip.IsValid() {
		return true
	}
	g := t.g
	if g.perIP[ip] >= max {
		return false
	}
	if g.perIP == nil {
		g.perIP = map[netip.Addr]int{}
	}
	g.perIP[ip]++
	t.ip = ip
	return true
}

// CountIP counts the connection against ip when it was not counted at
// accept (its peer was a trusted proxy, and ip comes from the PROXY
// header). It reports false when ip already has max connections.
func (t *Ticket) CountIP(ip netip.Addr, max int) bool {
	t.g.mu.Lock()
	defer t.g.mu.Unlock()
	if t.ip.IsValid() {
		return true
	}
	return t.countIP(ip, max)
}

// Settled ends the handshake: the connection no longer counts as pending,
// and the ticket lets go of it.
func (t *Ticket) Settled() {
	t.g.mu.Lock()
	if t.elem != nil {
		t.g.pending.Remove(t.elem)
		t.elem = nil
	}
	t.c = nil
	t.g.mu.Unlock()
}

// Evicted reports whether the gate closed the connection to make room for
// newer handshakes.
func (t *Ticket) Evicted() bool {
	t.g.mu.Lock()
	defer t.g.mu.Unlock()
	return t.evicted
}

// Leave ends the connection: not pending, and no longer counted against
// its address. A ticket that never entered has nothing to leave.
func (t *Ticket) Leave() {
	if t.g == nil {
		return
	}
	t.Settled()
	g := t.g
	g.mu.Lock()
	if t.ip.IsValid() {
		if g.perIP[t.ip]--; g.perIP[t.ip] <= 0 {
			delete(g.perIP, t.ip)
		}
		t.ip = netip.Addr{}
	}
	g.mu.Unlock()
}

// Pending returns how many connections are in their handshake.
func (g *Gate) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending.Len()
}

// ClosePending closes every connection still in its handshake (at the end
// of a shutdown's grace period) and returns how many.
func (g *Gate) ClosePending() int {
	g.mu.Lock()
	var conns []net.Conn
	for e := g.pending.Front(); e != nil; e = e.Next() {
		conns = append(conns, e.Value.(*Ticket).c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}
