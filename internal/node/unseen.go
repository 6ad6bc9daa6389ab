package node

import (
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/session"
)

// Connections that end without OnDisconnect.
//
// mochi v2.7.9's attachClient adds the client to its list (server.go:458)
// after OnSessionEstablish, then returns at once when writing the CONNACK
// (server.go:460-463) or resending the session's inflight messages
// (server.go:467-472) fails: no sendLWT (server.go:478), no OnDisconnect
// (server.go:486), and a session that ends with its connection is not
// removed from the list (server.go:488-492). A client that sends CONNECT
// and closes (or resets) its socket before the CONNACK, or one stopped by
// a takeover in between, gets there. Everything the hooks keep until
// OnDisconnect then stayed for good: the session tracker's entry and its
// registry record (still "connected"), a refused resume (session.Tracker
// refused, session.Durable failed), messages the flow control held back,
// the auth hook's ACL rules of the client, and mochi's own client of a clean
// session, whose id a later clean start then waited for (awaitEnded).
//
// The node notes each connection from OnSessionEstablish to OnDisconnect
// (attached); when mochi's EstablishConnection returns (the listener guard
// calls endedUnseen) one still noted is one whose OnDisconnect never came,
// and endedUnseen ends it as mochi would have. mochi's count of its clients
// has dropped by then; the node's own (connCount, guard.go) has not, and
// StopClients waits for it, so a connection that ends as the node stops is
// ended before the store and the mesh close.

// attached maps a client's connection (cl.Net.Conn) to the client, from
// OnSessionEstablish until OnDisconnect.
type attached struct{ m sync.Map }

func (a *attached) add(cl *mqtt.Client) {
	if cl.Net.Conn != nil && !isMesh(cl) {
		a.m.Store(cl.Net.Conn, cl)
	}
}

func (a *attached) remove(cl *mqtt.Client) {
	if cl.Net.Conn != nil {
		a.m.CompareAndDelete(cl.Net.Conn, cl)
	}
}

// endedUnseen runs once mochi is done with connection c (its
// EstablishConnection returned err). If mochi never called OnDisconnect for
// the client of c, it does what mochi does at the end of a connection
// (server.go:476-492): publishes the will (the connection ended without a
// DISCONNECT [MQTT-3.1.2-8]; a delayed one is held on mochi's timer as
// usual), calls the hooks' OnDisconnect (the node's and the auth hook's,
// the only ones keeping anything per connection), and ends a session that
// ends with its connection. A persistent session stays, resumable, as after
// any disconnect.
func (n *Node) endedUnseen(c net.Conn, err error) {
	v, ok := n.attached.m.LoadAndDelete(c)
	if !ok {
		return // OnDisconnect came (or the connection never got that far)
	}
	cl := v.(*mqtt.Client)
	n.connacks.release(cl) // if its CONNACK failed
	n.log.Debug("client connection ended before its CONNACK was sent", "client_id", cl.ID, "remote", cl.Net.Remote,
		"listener", cl.Net.Listener, "error", err)
	// mochi's sendLWT is unexported; a CONNECT on an established connection
	// is handled by sendLWT and nothing else (processConnect, server.go:735).
	_ = n.broker.InjectPacket(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}})
	expire := session.EndsWithConnection(cl) // mochi's expire (server.go:485)
	n.auth.OnDisconnect(cl, err, expire)
	n.hook.OnDisconnect(cl, err, expire)
	if expire && !cl.IsTakenOver() {
		cl.ClearInflights()
		n.broker.UnsubscribeClient(cl)
		if cur, ok := n.broker.Clients.Get(cl.ID); ok && cur == cl { // not a later connection of the id
			n.broker.Clients.Delete(cl.ID) // [MQTT-4.1.0-2]
		}
	}
}
