package upstream

import (
	"sync/atomic"

	"github.com/mqlb/mqlb/internal/balance"
)

// Lease is one client connection placed on a server by Connect: counted on
// the server (and in a tracking policy such as sticky) until Release. Its
// storage is the caller's: the load balancer keeps it inside its record of
// the connection, so a placement allocates nothing that outlives Connect.
// Closing a server's connections (rebalancing, evacuation) is the job of
// whoever holds them; the lease only says where each one is.
type Lease struct {
	// Key is what the policy places the connection by (client id,
	// username, source address); the caller sets it before Connect.
	// Rebalancing asks the policy where it belongs now.
	Key balance.Conn

	server   *Server   // nil until Connect placed it
	u        *Upstream // whose policy placed it
	released atomic.Bool
	retries  uint16 // Connect's attempts after the first (in the Bool's padding)
}

// Retries returns how many servers Connect tried after the first: the
// attempts that failed before the one that placed the connection, or all
// but one when none did.
func (l *Lease) Retries() int { return int(l.retries) }

// Server returns the server the connection is placed on: nil before
// Connect placed it.
func (l *Lease) Server() *Server { return l.server }

// Release ends the lease, once: the server's connection count and the
// sticky entry are released, and the connection's byte counts (in: client
// to server) join the server's totals. A lease never placed has nothing to
// release. The server connection is its holder's to close.
func (l *Lease) Release(in, out int64) {
	s := l.server
	if s == nil || l.released.Swap(true) {
		return
	}
	s.active.Add(-1)
	if t, ok := l.u.Policy.(balance.Tracker); ok {
		t.Released(&l.Key, s)
	}
	s.bytesIn.Add(in)
	s.bytesOut.Add(out)
}
