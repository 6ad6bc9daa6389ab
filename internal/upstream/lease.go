package upstream

import (
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Lease is one client connection placed on a server by Connect: the
// connection to the server, counted on it (and in a tracking policy such as
// sticky) until Release. A server knows its leases (Server.Leases), so a
// rebalancer or an operator can close the connections of one server.
type Lease struct {
	Server *Server
	Conn   *net.TCPConn

	u        *Upstream
	reply    mqttwire.Reply
	bc       *balance.Conn
	released atomic.Bool
	closer   atomic.Pointer[io.Closer] // the whole client connection (Bind)
}

// Bind sets what Close closes: the whole client connection, both sides
// (until then, Close closes the server socket).
func (l *Lease) Bind(c io.Closer) { l.closer.Store(&c) }

// Close ends the client connection the lease belongs to; its owner then
// finishes it and releases the lease.
func (l *Lease) Close() error {
	if c := l.closer.Load(); c != nil {
		return (*c).Close()
	}
	return l.Conn.Close()
}

// TakeReply returns, once, the server's answer to the CONNECT (a CONNACK,
// or a v5 AUTH) and whatever arrived with it: the client is owed all of it.
// The lease does not keep it for the connection's life.
func (l *Lease) TakeReply() mqttwire.Reply {
	rp := l.reply
	l.reply = mqttwire.Reply{}
	return rp
}

// Release ends the lease, once: the server connection is closed, the
// server's connection count and the sticky entry are released, and the
// connection's byte counts (in: client to server) join the server's totals.
func (l *Lease) Release(in, out int64) {
	if l.released.Swap(true) {
		return
	}
	l.Conn.Close()
	s := l.Server
	s.leases.remove(l)
	s.active.Add(-1)
	if t, ok := l.u.Policy.(balance.Tracker); ok {
		t.Released(l.bc, s)
	}
	s.bytesIn.Add(in)
	s.bytesOut.Add(out)
}

// leaseSet is a server's live leases.
type leaseSet struct {
	mu sync.Mutex
	m  map[*Lease]struct{}
}

func (ls *leaseSet) add(l *Lease) {
	ls.mu.Lock()
	if ls.m == nil {
		ls.m = map[*Lease]struct{}{}
	}
	ls.m[l] = struct{}{}
	ls.mu.Unlock()
}

func (ls *leaseSet) remove(l *Lease) {
	ls.mu.Lock()
	delete(ls.m, l)
	ls.mu.Unlock()
}

// Leases returns the server's live leases: the connections placed on it
// and not yet released.
func (s *Server) Leases() []*Lease {
	ls := &s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]*Lease, 0, len(ls.m))
	for l := range ls.m {
		out = append(out, l)
	}
	return out
}
