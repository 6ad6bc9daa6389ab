package upstream

import (
	"net"
	"sync/atomic"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Lease is one client connection placed on a server by Connect: the
// connection to the server, counted on it (and in a tracking policy such as
// sticky) until Release. It knows its server, so whoever holds leases (the
// proxy's live table) can find and close the connections of one server.
type Lease struct {
	Server   *Server
	Conn     *net.TCPConn
	u        *Upstream
	reply    mqttwire.Reply
	bc       *balance.Conn
	released atomic.Bool
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
	s.active.Add(-1)
	if t, ok := l.u.Policy.(balance.Tracker); ok {
		t.Released(l.bc, s)
	}
	s.bytesIn.Add(in)
	s.bytesOut.Add(out)
}
