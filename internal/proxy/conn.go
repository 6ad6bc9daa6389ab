package proxy

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/relay"
	"github.com/mqlb/mqlb/internal/upstream"
)

// Conn is one client connection, from accept to finish; relayed, it is in
// the live table. It is the one record the load balancer keeps of an idle
// relayed connection (besides the relay's own): its placement on a server
// (the lease, with the client id, username and address it was placed by)
// and its pass through the gate are parts of it, and names are pointers to
// what the runtime already holds. The access-log record is built from it
// when it finishes (see Record).
type Conn struct {
	ID    uint64
	Stats relay.Stats

	start    time.Time
	lease    upstream.Lease     // Key: client id, username, source address; its server once placed
	ticket   listener.Ticket    // its pass through the gate (per-address count)
	listener *listener.Settings // its listener (nil: closed by a reload just after accept)
	upstream *upstream.Upstream // set once a server is being connected
	cert     *certNames         // nil without a client certificate or identity
	result   string
	reason   string
	port     uint16 // the client's port; its address is lease.Key.Source
	version  byte
	connack  Connack
	counted  bool                   // the result is in connections_total already
	closing  atomic.Bool            // Close was called (maybe before the relay started)
	cause    atomic.Pointer[string] // why it was closed (CloseFor): its reason once the close ends the relay
	finished atomic.Bool            // finish ran

	relay atomic.Pointer[relay.Relay] // owns both connections once started
	rt    *Runtime                    // its config generation
	p     *Proxy                      // which finishes it
}

// certNames is what a client certificate says, kept only when there is one.
type certNames struct {
	cn       string // the verified certificate's subject CN
	identity string // the certificate identity (tls.identity)
}

// setRemote records the client's address: the socket peer, or the client a
// PROXY header names.
func (c *Conn) setRemote(ap netip.AddrPort) {
	c.lease.Key.Source, c.port = ap.Addr(), ap.Port()
}

// Close ends the connection (both sides). Called before its relay started,
// it takes effect as soon as the relay does.
func (c *Conn) Close() error {
	c.closing.Store(true)
	if r := c.relay.Load(); r != nil {
		r.Close()
	}
	return nil
}

// Reasons a relayed connection closed by the load balancer is logged
// with (the access log's reason). A close without one (Close: at shutdown)
// is logged "closed".
const (
	ReasonKicked = "kicked" // DELETE /api/v1/connections?client_id=…
	ReasonPanic  = "panic"  // a panic serving the connection
)

// CloseFor ends the connection like Close, and records why: when this
// close is what ends its relay (the relay reports "closed"), the access
// log's reason is reason instead. The first reason given stays.
func (c *Conn) CloseFor(reason string) {
	c.cause.CompareAndSwap(nil, &reason)
	c.Close()
}

// RelayDone is the relay's end (a relay.Done): the connection finishes.
func (c *Conn) RelayDone(res relay.Result) {
	c.reason = res.Reason
	if cause := c.cause.Load(); cause != nil && res.Reason == relay.ReasonClosed {
		c.reason = *cause
	}
	c.p.finish(c)
}

// started records the relay and honours a Close that came first.
func (c *Conn) started(r *relay.Relay) {
	c.relay.Store(r)
	if c.closing.Load() {
		r.Close()
	}
}
