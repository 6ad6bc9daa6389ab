package node

import (
	"bytes"
	"context"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/meshwire"
	"github.com/mqlb/mqlb/internal/topic"
)

// hook connects mochi's events to the mesh, the retained store and the
// session registry. It does not authenticate or authorize: that is the auth
// hook's job, which must stay the only one providing those events.
type hook struct {
	mqtt.HookBase
	n    *Node
	pids pidSwap
}

var _ mqtt.Hook = (*hook)(nil)

func (h *hook) ID() string { return "mqlb-node" }

var provided = []byte{
	mqtt.OnConnect, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
	mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnSelectSubscribers,
	mqtt.OnPublish, mqtt.OnPublished, mqtt.OnPublishDropped, mqtt.OnRetainMessage,
	mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
	mqtt.OnWill, mqtt.OnWillSent, mqtt.OnClientExpired, mqtt.OnPacketEncode, mqtt.OnPacketSent, mqtt.OnPacketRead,
	mqtt.OnPacketProcessed,
}

func (h *hook) Provides(b byte) bool { return bytes.IndexByte(provided, b) >= 0 }

// OnConnect refuses, with CONNACK "server unavailable", a client that wants
// to resume its session while the session registry cannot be read: the
// client (or the mqlb load balancer in front, which retries another node on
// that code) comes back when the store is, and finds its session (with
// durable sessions the session is looked up after authentication instead:
// session.Tracker.Resumable). It also caps the client's keep-alive (see
// capKeepAlive), and drops a will to a $share topic (see dropShareWill).
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	restoreWill(cl)
	stashWillProperties(cl, pk)
	h.dropShareWill(cl)
	if isMesh(cl) {
		return nil
	}
	capKeepAlive(cl, h.n.cfg.MQTT.MaxKeepAlive.D())
	if h.n.draining.Load() {
		return refuseDraining(cl)
	}
	err := h.n.sessions.Resumable(cl, pk)
	if err == nil {
		return nil
	}
	h.n.warnEvery("session registry unavailable: refused a client resuming its session", "client_id", cl.ID, "error", err)
	code := packets.ErrServerUnavailable // v5 0x88
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Err3ServerUnavailable // v3 0x03
	}
	// mochi closes without a CONNACK when OnConnect fails: answer first.
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code.Code,
		Properties: packets.Properties{ReasonString: "session registry unavailable: try again"}})
	return packets.ErrServerUnavailable
}

// OnSessionEstablish runs after authentication and before mochi looks for an
// existing session, so a session held by another node is moved here first,
// and the end of a clean session's previous connection here completes first
// (see awaitEnded). From here until OnDisconnect the connection is noted in
// attached: mochi skips OnDisconnect when the CONNACK fails (see unseen.go).
// What is written to it waits for its CONNACK (see connacks).
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.n.connacks.hold(cl)
	h.n.attached.add(cl)
	h.awaitEnded(cl)
	h.n.sessions.Establish(cl, pk)
	h.n.flow.resuming(cl, pk)
}

// OnSessionEstablished replaces mochi's outbound flow control for the
// client, which deadlocks in mochi v2.7.9, by the node's (see flow). mochi
// has dropped any delayed will of the client id's earlier connection here
// by now: a record of its session moving away is done with.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.n.sessions.Connected(cl)
	h.n.flow.established(cl)
	h.n.durable.Start(cl)
	h.n.metrics.connects.Add(1)
	h.n.log.Debug("client connected", "client_id", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener,
		"username", string(cl.Properties.Username))
}

// OnDisconnect ends what the node keeps for a connection. mochi skips it
// when a connection ends before its CONNACK: Node.endedUnseen calls it then.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.n.attached.remove(cl)
	h.n.flow.ended(cl)
	if isMesh(cl) {
		return
	}
	h.n.log.Debug("client disconnected", "client_id", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener, "error", err)
	h.n.sessions.Disconnected(cl, expire)
	h.pids.forget(cl)
	h.n.durable.Disconnected(cl, expire)
}

// OnSubscribed registers the new filters with the mesh and, before mochi
// sends the SUBACK, waits until every node knows the new interest, so a
// message published anywhere after the SUBACK reaches the subscriber.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if isMesh(cl) {
		return
	}
	changed := false
	for i, sub := range pk.Filters {
		if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code {
			changed = h.n.mesh.subscribe(cl.ID, sub.Filter) || changed
		}
	}
	if changed {
		h.n.syncInterest()
	}
	h.n.retained.caughtUp()
	h.n.sessions.SaveSubs(cl)
	h.n.durable.Resubscribed(cl)
}

// OnUnsubscribed drops filters from the mesh. mochi also calls it when a
// session ends (with no packet id); only a client's own UNSUBSCRIBE changes
// its registry record.
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if isMesh(cl) {
		return
	}
	for _, sub := range pk.Filters {
		h.n.mesh.unsubscribe(cl.ID, sub.Filter)
	}
	if pk.PacketID != 0 {
		h.n.sessions.SaveSubs(cl)
		h.n.durable.Resubscribed(cl)
	}
}

func (h *hook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if h.n.sessions.WillMoved(pk) {
		return &mqtt.Subscribers{Shared: map[string]map[string]packets.Subscription{},
			SharedSelected: map[string]packets.Subscription{}, Subscriptions: map[string]packets.Subscription{},
			InlineSubscriptions: map[int]mqtt.InlineSubscription{}}
	}
	subs = h.n.mesh.selectSubscribers(subs, pk) // notes the shared groups served here, for sendWill
	h.n.durable.FilterOut(subs, pk)
	if pk.Connect.WillProperties.WillDelayInterval > 0 && pk.Origin != "" {
		if _, ok := h.n.broker.Clients.Get(pk.Origin); !ok {
			h.willAtSessionEnd(pk)
		}
	}
	return subs
}

// willAtSessionEnd does for a delayed will due at its session's end what
// mochi skips: a will delay longer than the session expiry is cut to it
// (clients.go), and mochi expires the session, dropping the client, in the
// same tick as it publishes the will, then neither retains it nor calls
// OnWillSent for a client it no longer has. Only subscribers on this node
// got it: it now goes to the other nodes and, when retained, is kept.
func (h *hook) willAtSessionEnd(pk packets.Packet) {
	if pk.FixedHeader.Retain {
		r := willPacket(pk.Copy(false))
		h.n.broker.Topics.RetainMessage(r)
		h.n.retained.store(r)
	}
	h.sendWill(pk.Origin, pk)
}

// OnPublish gives each publish from a local client its mesh message id.
// With replicated durability a QoS 1/2 one is stored in the session queue
// first: mochi drops it for now, and it comes back through InjectPacket once
// stored (session.Durable.StoreAsync), when mochi acknowledges and delivers it. A
// PUBACK/PUBREC means stored; a client's publishes are stored concurrently
// and handled in their order. A publish to a $share topic is refused (see
// refuseShareName).
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if isMesh(cl) {
		return pk, nil
	}
	if _, tagged := meshwire.TagOf(&pk); tagged {
		return pk, nil // stored already: no client PUBLISH carries a tag
	}
	if topic.ShareName(pk.TopicName) {
		h.refuseShareName(cl, pk) // conformance.go
		return pk, packets.ErrRejectPacket
	}
	h.n.metrics.messagesIn.Add(1)
	if pk.FixedHeader.Retain && h.n.retainedFull(pk) {
		// delivered, not retained (as EMQX past max_retained_messages)
		pk.FixedHeader.Retain = false
		h.n.metrics.droppedN("retained_limit", 1)
		h.n.warnEvery("retained message not kept: mqtt.max_retained_messages reached", "client_id", cl.ID,
			"max", h.n.cfg.MQTT.MaxRetainedMessages)
	}
	if !h.n.durable.On() || pk.FixedHeader.Qos == 0 || strings.HasPrefix(pk.TopicName, "$SYS") {
		meshwire.SetTag(&pk, meshwire.Tag{ID: h.n.mesh.nextID()})
		return pk, nil
	}
	var id meshwire.MsgID
	var released bool
	var err error
	if pk.FixedHeader.Qos == 2 && h.n.durable.Persistent(cl) {
		id, released, err = h.n.durable.ReceivedID(cl, pk, h.pids.clientID(cl, pk.PacketID), h.n.mesh.nextID) // exactly once across a crash (session/qos2.go)
	} else {
		id = h.n.mesh.nextID()
	}
	if err != nil {
		h.n.durable.RefusePublish(cl, pk, err)
		return pk, packets.ErrRejectPacket
	}
	if released {
		h.n.durable.Released(cl, pk)
		return pk, packets.ErrRejectPacket
	}
	meshwire.SetTag(&pk, meshwire.Tag{ID: id})
	h.n.durable.StoreAsync(cl, pk)
	return pk, packets.ErrRejectPacket
}

// OnPublished sends a local publish to the other nodes, after mochi has
// delivered it here.
func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if isMesh(cl) || pk.Ignore {
		return
	}
	id := meshwire.IDOf(&pk)
	h.n.mesh.publish(pk, id, h.n.mesh.takeHandled(id))
}

// OnWill keeps the sentinel subscription (select.go) until a delayed will
// is due: it must not be published here if its session moves away.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.WillDelayInterval > 0 {
		h.n.mesh.delayedWill(will.WillDelayInterval)
	}
	return will, nil
}

// OnWillSent sends a will message to the other nodes: mochi publishes wills
// itself, without OnPublish.
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) { h.sendWill(cl.ID, pk) }

// sendWill stores client id's will in the durable queues of the sessions
// it is for, and publishes it on the mesh.
func (h *hook) sendWill(id string, pk packets.Packet) {
	msgID := h.n.mesh.nextID()
	if h.n.durable.On() && pk.FixedHeader.Qos > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), h.n.cfg.Mesh.Timeout.D())
		if err := h.n.durable.Store(ctx, id, willPacket(pk), msgID); err != nil {
			h.n.warnEvery("session queue unavailable: will not stored", "error", err)
		}
		cancel()
	}
	h.n.mesh.publish(willPacket(pk), msgID, h.n.mesh.takeHandled(willKey(id)))
}

// OnRetainMessage writes a local retained publish (or will) to the bucket.
func (h *hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	if isMesh(cl) {
		return
	}
	h.n.retained.store(willPacket(pk))
}

// willPacket clears what mochi keeps in Expiry for a delayed will: the time
// it was due [MQTT-3.1.3-9], not a message expiry.
func willPacket(pk packets.Packet) packets.Packet {
	delayed := pk.Connect.WillProperties.WillDelayInterval > 0
	if delayed {
		pk.Expiry = 0
	}
	pk = restoreWillProperties(pk, true) // and its own properties back (willprops.go), with its own expiry
	if delayed {
		// Now an ordinary message: OnPacketEncode must not take its own
		// expiry for mochi's due time and clear it.
		pk.Connect.WillProperties = pk.Connect.WillProperties.Copy(false)
		pk.Connect.WillProperties.WillDelayInterval = 0
	}
	return pk
}

func (h *hook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	// A delayed will's Expiry is the time it was due, already past: the
	// queues below would drop it as expired (it is no message expiry).
	pk = willPacket(pk)
	h.n.sessions.Queued(cl, pk)
	h.n.flow.queued(cl, pk)
}

// OnPacketProcessed keeps mochi's send quota where the node's flow control
// needs it (see flow).
func (h *hook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	h.n.flow.processed(cl, pk)
}

func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.n.sessions.Settled(cl, pk, false)
	if t := pk.FixedHeader.Type; t == packets.Puback || t == packets.Pubcomp {
		h.n.durable.Acked(cl, pk.PacketID, t == packets.Pubcomp)
	}
}

func (h *hook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.n.sessions.Settled(cl, pk, true)
	h.n.durable.Acked(cl, pk.PacketID, false)
}

func (h *hook) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) {
	h.n.metrics.dropped("client_queue_full")
	h.n.log.Debug("message dropped: client not reading", "client_id", cl.ID)
}

func (h *hook) OnClientExpired(cl *mqtt.Client) {
	h.n.log.Debug("session expired", "client_id", cl.ID)
	if h.n.sessions.Expired(cl) {
		h.n.durable.End(cl.ID)
	}
}
