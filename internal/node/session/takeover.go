package session

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/node/meshwire"
)

// Session takeover between nodes.
//
// A client connects to node C while the registry says node A owns its
// session. C asks A on "mqlb.<c>.node.<A>.takeover"; A closes the old
// connection if it is still open (v5 DISCONNECT 0x8E Session taken over
// [MQTT-3.1.4-3]), answers with the session's subscriptions and its queued
// and in-flight QoS 1/2 messages (original packet ids, in queue order
// [MQTT-4.4.0-1] [MQTT-4.6.0-1]) and forgets the session. C installs them as
// a disconnected session under the client id, so that mochi inherits it and
// answers CONNACK session present 1 [MQTT-3.2.2-3]. A clean-start connection
// only has the old one closed [MQTT-3.1.2-4].
//
// While the request is on its way, C already holds the session's
// subscriptions (from the registry) under a placeholder client, so messages
// published meanwhile are not lost: they are appended after A's messages,
// without those A already had (same message id). If A does not answer (the
// node is gone), the subscriptions are restored from the registry; the
// messages queued on A are lost with it.

type takeoverRequest struct {
	Client string `json:"client"`
	Clean  bool   `json:"clean"`
	From   string `json:"from"`
}

type handover struct {
	Found   bool          `json:"found"`
	Ended   bool          `json:"ended,omitempty"` // a 3.1.1 clean session, which is never resumed
	Version byte          `json:"version,omitempty"`
	Subs    []subRecord   `json:"subs,omitempty"`
	Msgs    []handoverMsg `json:"msgs,omitempty"`
	Queue   *Position     `json:"queue,omitempty"` // where the session's queue stands (replicated durability)
}

// handoverMsg is one entry of a session's inflight store: a PUBLISH (its
// envelope), or the PUBREC/PUBREL state of a QoS 2 exchange.
type handoverMsg struct {
	Type byte           `json:"t"`
	ID   uint16         `json:"id"`
	Tag  meshwire.MsgID `json:"tag,omitzero"` // "origin/seq"
	Env  []byte         `json:"env,omitempty"`
	// Unsent: a PUBLISH never written to the client, resent with DUP 0.
	// Nodes before it leave it out: their messages go with DUP 1.
	Unsent bool `json:"unsent,omitempty"`
}

// takeOver runs on the connecting node, inside Establish.
func (s *Tracker) takeOver(ctx context.Context, cl *mqtt.Client, pk packets.Packet, rec *Record) {
	keep := !pk.Connect.Clean
	restorable := keep && !rec.Clean && !rec.expired(time.Now().Unix())
	var hold *mqtt.Client
	if restorable && len(rec.Subs) > 0 {
		hold = s.hold(cl.ID, rec)
	}
	h, err := s.ask(ctx, rec.Node, cl.ID, !keep)
	result := "handed_over"
	switch {
	case err != nil:
		result = "owner_gone"
		s.env.Log.Info("session owner did not answer: restoring subscriptions from the registry",
			"client_id", cl.ID, "owner", rec.Node, "error", err)
		h = &handover{Found: restorable, Version: rec.Version, Subs: rec.Subs}
	case h.Ended:
		// A 3.1.1 clean session is not reused [MQTT-3.1.2-6]: a new one
		// starts, session present 0, as mochi answers on one node.
		result = "kicked"
		h = &handover{}
	case !h.Found:
		result = "not_found"
		h = &handover{Found: restorable, Version: rec.Version, Subs: rec.Subs}
	case !keep:
		result = "kicked"
	}
	s.env.TookOver(result)
	if keep && h.Found {
		if s.durable.Persistent(cl) {
			// Follow the queue before the subscriptions are back, so no live copy is kept twice.
			s.durable.sync(ctx, cl.ID, subsMap(h.Subs), false)
			s.durable.resumeAt(cl.ID, h.Queue)
		}
		s.install(cl.ID, h, hold)
	} else if hold != nil {
		s.release(hold)
	}
}

// ask sends the takeover request; an error means the owner is gone (no
// responders) or did not answer in time.
func (s *Tracker) ask(ctx context.Context, owner, id string, clean bool) (*handover, error) {
	if owner == s.env.Node {
		return nil, errors.New("owner is an earlier run of this node")
	}
	req, _ := json.Marshal(takeoverRequest{Client: id, Clean: clean, From: s.env.Node})
	rctx, cancel := context.WithTimeout(ctx, s.env.Timeout)
	defer cancel()
	msg, err := s.env.Mesh.Control().RequestWithContext(rctx, s.subj.Takeover(owner), req)
	if err != nil {
		return nil, err
	}
	h := new(handover)
	if err := json.Unmarshal(msg.Data, h); err != nil {
		return nil, err
	}
	return h, nil
}

// OnTakeover answers a takeover request on the owning node.
func (s *Tracker) OnTakeover(msg *nats.Msg) {
	var req takeoverRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		return
	}
	h := s.giveUp(req)
	data, _ := json.Marshal(h)
	for len(data) > int(s.env.Mesh.Control().MaxPayload())-1024 && len(h.Msgs) > 0 {
		drop := max(1, len(h.Msgs)/10) // too large for one reply: drop the oldest
		h.Msgs = h.Msgs[drop:]
		s.env.Drop("handover_too_large", drop)
		data, _ = json.Marshal(h)
	}
	if err := msg.Respond(data); err != nil {
		s.env.Log.Warn("takeover reply failed", "client_id", req.Client, "error", err)
	}
}

// giveUp closes and removes the local session of req.Client, returning its
// state unless the requester starts clean.
func (s *Tracker) giveUp(req takeoverRequest) *handover {
	cl, ok := s.env.Broker.Clients.Get(req.Client)
	if !ok {
		return &handover{}
	}
	now := time.Now().Unix()
	s.mu.Lock()
	open := !cl.Closed()
	if open {
		s.handedOver[cl] = now
	}
	delayed := false
	if ss := s.byID[cl.ID]; ss != nil && ss.cl == cl && ss.willDelay > 0 {
		// The client is back before its will delay ended: no will
		// [MQTT-3.1.3-9]. mochi may hold it on its timer already, be in
		// sendLWT, or get there once the connection is closed below: the
		// select hook drops it (see WillMoved). Recorded under s.mu with
		// handedOver, so that Disconnected finds the record.
		s.willMovedAway(cl.ID, ss.conn, ss.willDelay, open, now)
		delayed = true
	}
	s.mu.Unlock()
	if delayed {
		s.pruneMovedWills(now)
	}
	s.env.Log.Debug("session taken over by another node", "client_id", req.Client, "to", req.From)
	if !cl.Closed() {
		if cl.Properties.ProtocolVersion == 5 {
			_ = s.env.Broker.DisconnectClient(cl, packets.ErrSessionTakenOver) // [MQTT-3.1.4-3]
		} else {
			cl.Stop(packets.ErrSessionTakenOver) // no server DISCONNECT before v5
		}
	}
	// Deliveries from the session's queue stay there, for the new owner to
	// send again: the anchor's floor is moved to below them first.
	queued := s.durable.DeliveryIDs(cl)
	pos := s.durable.HandOff(cl.ID)
	h := &handover{Found: true, Version: cl.Properties.ProtocolVersion, Queue: pos,
		Ended: cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean}
	if !req.Clean && !EndsWithConnection(cl) {
		h.Subs = subRecords(cl.State.Subscriptions.GetAll())
		h.Msgs = s.snapshot(cl, queued)
	}
	s.remove(cl)
	return h
}

// snapshot returns a client's inflight store in queue order.
func (s *Tracker) snapshot(cl *mqtt.Client, skip map[uint16]bool) []handoverMsg {
	pks := s.Queue(cl)
	now := time.Now().Unix()
	out := make([]handoverMsg, 0, len(pks))
	for _, pk := range pks {
		if skip[pk.PacketID] {
			continue
		}
		m := handoverMsg{Type: pk.FixedHeader.Type, ID: pk.PacketID, Tag: meshwire.IDOf(&pk)}
		if pk.FixedHeader.Type == packets.Publish {
			m.Unsent = !s.wasSent(cl.ID, pk.PacketID)
			e := meshwire.Envelope{Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
				Props: meshwire.Props(pk.Properties), Payload: pk.Payload}
			if pk.Expiry > 0 {
				if pk.Expiry <= now {
					continue // expired while queued [MQTT-3.3.2-5]
				}
				e.HasExpiry, e.Expiry = true, uint32(pk.Expiry-now)
			}
			m.Env = meshwire.AppendEnvelope(nil, &e)
		}
		out = append(out, m)
	}
	return out
}

// Queue returns cl's inflight store in the order its messages were queued.
func (s *Tracker) Queue(cl *mqtt.Client) []packets.Packet {
	pks := cl.State.Inflight.GetAll(false)
	sortQueue(pks, s.queueOrder(cl.ID))
	return pks
}

// sortQueue orders packets by queue position, then arrival second, then id.
func sortQueue(pks []packets.Packet, order map[uint16]uint64) {
	pos := func(pk packets.Packet) uint64 {
		if p, ok := order[pk.PacketID]; ok {
			return p
		}
		return 1 << 63
	}
	sort.SliceStable(pks, func(i, j int) bool {
		pi, pj := pos(pks[i]), pos(pks[j])
		if pi != pj {
			return pi < pj
		}
		if pks[i].Created != pks[j].Created {
			return pks[i].Created < pks[j].Created
		}
		return pks[i].PacketID < pks[j].PacketID
	})
}

// remove drops a session from this node without counting its messages as
// dropped (they live on elsewhere).
func (s *Tracker) remove(cl *mqtt.Client) {
	s.env.Broker.UnsubscribeClient(cl)
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if cl.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&s.env.Broker.Info.Inflight, -1)
		}
	}
	if cur, ok := s.env.Broker.Clients.Get(cl.ID); ok && cur == cl {
		s.env.Broker.Clients.Delete(cl.ID)
	}
	s.mu.Lock()
	if ss := s.byID[cl.ID]; ss == nil || ss.cl == cl {
		delete(s.byID, cl.ID)
		s.sent.Delete(cl.ID)
	}
	s.mu.Unlock()
}
