package node

import (
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqlb/mqlb/internal/node/inbound"
)

// maxConnectPacket caps a client's first packet, the CONNECT, below
// mqtt.max_packet_size: it is read before the client is authenticated. It is
// the load balancer's limits.max_connect_packet default.
const maxConnectPacket = 256 << 10

// guarded is a listener whose connections reach mochi through the inbound
// packet guard: mochi sees whole packets only, so what it allocates for a
// packet has arrived, and an oversized or non-CONNECT first packet is refused
// from its fixed header.
type guarded struct {
	listeners.Listener
	lim   inbound.Limits
	ended func(c net.Conn, err error) // after mochi is done with c (see Node.endedUnseen); may be nil
	conns *connCount                  // the connections being served, until ended returns
}

// guard wraps l with the limits of the node's config; ended, if not nil,
// is called with each connection once mochi's EstablishConnection returns.
// conns counts each connection until then.
func guard(l listeners.Listener, maxPacket int, ended func(net.Conn, error), conns *connCount) listeners.Listener {
	first := maxConnectPacket
	if maxPacket > 0 {
		first = min(first, maxPacket)
	}
	return &guarded{Listener: l, lim: inbound.Limits{First: first, Max: maxPacket}, ended: ended, conns: conns}
}

// Serve passes l's connections to establish through the guard, and tells
// ended when mochi is done with each.
func (g *guarded) Serve(establish listeners.EstablishFn) {
	g.Listener.Serve(func(id string, c net.Conn) error {
		g.conns.add()
		defer g.conns.done()
		in := inbound.NewConn(c, g.lim)
		err := establish(id, in)
		if g.ended != nil {
			g.ended(in, err)
		}
		return err
	})
}

// connCount counts connections until their end is handled. mochi's own
// count (Listeners.ClientsWg) drops as its EstablishConnection returns,
// before the node has ended a connection mochi never reported the end of
// (endedUnseen: its will, its hooks, its registry record), so stopping
// waits for this one too. Not a sync.WaitGroup: a connection accepted as
// the listeners close may be counted while a stop already waits.
type connCount struct {
	mu   sync.Mutex
	n    int
	none chan struct{} // closed when n drops to 0
}

func (c *connCount) add() {
	c.mu.Lock()
	if c.n == 0 {
		c.none = make(chan struct{})
	}
	c.n++
	c.mu.Unlock()
}

func (c *connCount) done() {
	c.mu.Lock()
	c.n--
	if c.n == 0 {
		close(c.none)
	}
	c.mu.Unlock()
}

// wait returns once no connection is counted, or at deadline.
func (c *connCount) wait(deadline time.Time) {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return
	}
	none := c.none
	c.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-none:
	case <-t.C:
	}
}
