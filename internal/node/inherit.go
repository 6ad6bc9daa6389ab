package node

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The read ACL on what a connection inherits with its session.
//
// A connection with clean start 0 inherits its client id's session: its
// subscriptions and the QoS 1/2 messages in its inflight store, whether
// queued while the session was offline, in flight to an earlier connection
// (a live takeover), or handed over by another node (session/install.go).
// mochi checked each with the read ACL of the connection it was queued for
// (or the placeholder holding a session during a handover), but the new
// connection may be another user's: anyone allowed to connect with the
// client id. mochi (inheritClientSession) copies the store onto the new
// connection and resends all of it after the CONNACK, with no check; an
// outside audit had a user with no rights on a topic receive another
// user's queued messages on it (mosquitto sends none of them).
//
// So once the CONNACK is written, before mochi resends anything (and before
// anything else is written: see connacks), every inherited PUBLISH the new
// connection may not read is dropped, and counted
// (mqlb_node_dropped_total{reason="not_authorized"}); so are those flow
// held back for the connection's Receive Maximum. A PUBREL stays: it
// completes a QoS 2 exchange the earlier connection acknowledged, and
// carries no message. Deliveries from a replicated session's queue are
// acknowledged on it (the queue moves past them); the ones its reader sends
// later are checked there (session.Env.MayRead), as mochi checks each live
// delivery. The subscriptions are kept, as mosquitto keeps them: nothing
// reaches the connection through them that its read ACL refuses.
func (n *Node) dropUnreadable(cl *mqtt.Client) {
	if isMesh(cl) || cl.Properties.Clean {
		return // a clean start inherits nothing
	}
	may := func(pk packets.Packet) bool { return n.mayReadInherited(cl, pk) }
	dropped := 0
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if may(pk) {
			continue
		}
		if cl.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&n.broker.Info.Inflight, -1)
			n.droppedUnreadable(cl, pk)
			dropped++
		}
	}
	for _, pk := range n.flow.dropHeld(cl, may) {
		atomic.AddInt64(&n.broker.Info.Inflight, -1) // still counted while held (flow.resuming)
		n.droppedUnreadable(cl, pk)
		dropped++
	}
	if dropped > 0 {
		n.log.Info("inherited session messages dropped: the connection may not read them", "client_id", cl.ID,
			"username", string(cl.Properties.Username), "remote", cl.Net.Remote, "dropped", dropped)
	}
}

// mayReadInherited reports whether cl may be sent the inherited packet
// pk: a PUBLISH whose topic its read ACL allows, or any other packet (a
// PUBREL, or the state of a QoS 2 publish the session received). A PUBLISH
// mochi stored without its topic (an outbound topic alias of the earlier
// connection, which the new one does not know) cannot be checked: it is
// refused.
func (n *Node) mayReadInherited(cl *mqtt.Client, pk packets.Packet) bool {
	if pk.FixedHeader.Type != packets.Publish {
		return true
	}
	return pk.TopicName != "" && n.auth.OnACLCheck(cl, pk.TopicName, false)
}

// droppedUnreadable settles an inherited PUBLISH dropped by dropUnreadable
// as mochi's OnQosDropped would, counted for the ACL.
func (n *Node) droppedUnreadable(cl *mqtt.Client, pk packets.Packet) {
	n.sessions.Settled(cl, pk, false)       // its queue position and sent mark go
	n.durable.Acked(cl, pk.PacketID, false) // a delivery from the session's queue: done with
	n.metrics.dropped("not_authorized")
	n.log.Debug("inherited message dropped: read not allowed", "client_id", cl.ID,
		"username", string(cl.Properties.Username), "topic", pk.TopicName)
}
