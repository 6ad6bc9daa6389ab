package node

import (
	"net"

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
}

// guard wraps l with the limits of the node's config; ended, if not nil,
// is called with each connection once mochi's EstablishConnection returns.
func guard(l listeners.Listener, maxPacket int, ended func(net.Conn, error)) listeners.Listener {
	first := maxConnectPacket
	if maxPacket > 0 {
		first = min(first, maxPacket)
	}
	return &guarded{Listener: l, lim: inbound.Limits{First: first, Max: maxPacket}, ended: ended}
}

// Serve passes l's connections to establish through the guard, and tells
// ended when mochi is done with each.
func (g *guarded) Serve(establish listeners.EstablishFn) {
	g.Listener.Serve(func(id string, c net.Conn) error {
		in := inbound.NewConn(c, g.lim)
		err := establish(id, in)
		if g.ended != nil {
			g.ended(in, err)
		}
		return err
	})
}
