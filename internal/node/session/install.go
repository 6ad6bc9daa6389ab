package session

import (
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/node/meshwire"
)

// Installing a session taken over from another node.
//
// A session is installed as a disconnected mochi client under the client's
// id, with its subscriptions in the topic index and its messages in the
// inflight store; mochi's own takeover (inheritClientSession) then moves it
// onto the new connection and resends the messages after the CONNACK.

// holdPrefix marks placeholder clients (see takeover.go). U+0000 cannot
// appear in an MQTT client id [MQTT-1.5.4-2].
const holdPrefix = "\x00mqlb-hold/"

// isHold reports whether id is a placeholder's.
func isHold(id string) bool { return strings.HasPrefix(id, holdPrefix) }

// newDetached returns a closed client that is not in the client map yet.
// Its listener "mesh" and no connection mark it for the read ACL, which
// lets what it keeps through and checks it against the connection that
// takes the session (auth.detached).
func (s *Tracker) newDetached(id string, version byte) *mqtt.Client {
	cl := s.env.Broker.NewClient(nil, "mesh", id, false)
	cl.Properties.ProtocolVersion = version
	cl.Stop(nil)
	return cl
}

// subscribeDetached puts subs into the topic index and the mesh for cl.
func (s *Tracker) subscribeDetached(cl *mqtt.Client, subs []subRecord) bool {
	changed := false
	for _, r := range subs {
		sub := r.subscription()
		if s.env.Broker.Topics.Subscribe(cl.ID, sub) {
			atomic.AddInt64(&s.env.Broker.Info.Subscriptions, 1)
		}
		cl.State.Subscriptions.Add(sub.Filter, sub)
		changed = s.env.Mesh.Subscribe(cl.ID, sub.Filter) || changed
	}
	return changed
}

// hold subscribes a placeholder client to the session's last known
// subscriptions, to keep what is published while the owner hands over.
func (s *Tracker) hold(id string, rec *Record) *mqtt.Client {
	p := s.newDetached(holdPrefix+id+"/"+randomHex(4), rec.Version)
	s.env.Broker.Clients.Add(p)
	if s.subscribeDetached(p, rec.Subs) {
		s.env.Mesh.SyncInterest()
	}
	return p
}

// release removes a placeholder and returns what it kept, in queue order.
func (s *Tracker) release(p *mqtt.Client) []packets.Packet {
	for filter := range p.State.Subscriptions.GetAll() {
		if s.env.Broker.Topics.Unsubscribe(filter, p.ID) {
			atomic.AddInt64(&s.env.Broker.Info.Subscriptions, -1)
		}
		p.State.Subscriptions.Delete(filter)
		s.env.Mesh.Unsubscribe(p.ID, filter)
	}
	s.env.Broker.Clients.Delete(p.ID)
	pks := p.State.Inflight.GetAll(false)
	sortQueue(pks, s.queueOrder(p.ID))
	for _, pk := range pks {
		if p.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&s.env.Broker.Info.Inflight, -1)
		}
	}
	s.mu.Lock()
	delete(s.byID, p.ID)
	s.mu.Unlock()
	return pks
}

// install makes h the disconnected session of id, then moves over what the
// placeholder kept meanwhile (hold may be nil).
func (s *Tracker) install(id string, h *handover, hold *mqtt.Client) {
	cl := s.newDetached(id, h.Version)
	// Resend order: mochi resends inflight messages sorted by their Created
	// second, so give each its own second, oldest first, all in the past.
	created := time.Now().Unix() - int64(len(h.Msgs)) - 1
	seen := map[meshwire.MsgID]bool{}
	var sent []uint16 // the old owner wrote them to the client (DUP on resend: sent.go)
	for _, m := range h.Msgs {
		pk, ok := m.packet()
		if !ok {
			continue
		}
		pk.Created = created
		created++
		s.enqueue(cl, pk)
		seen[m.Tag] = !m.Tag.IsZero()
		if m.Type == packets.Publish && !m.Unsent {
			sent = append(sent, m.ID)
		}
	}
	s.setSent(id, sent)
	changed := s.subscribeDetached(cl, h.Subs)
	s.env.Broker.Clients.Add(cl)
	if hold != nil {
		for _, pk := range s.release(hold) {
			if pk.FixedHeader.Type != packets.Publish || seen[meshwire.IDOf(&pk)] {
				continue
			}
			if pk.FixedHeader.Qos > 0 && s.durable.covers(id, pk.TopicName) {
				continue // the session's queue has it
			}
			next, err := cl.NextPacketID()
			if err != nil {
				s.env.Drop("inflight_full", 1)
				continue
			}
			pk.PacketID, pk.Created = uint16(next), created
			created++
			s.enqueue(cl, pk)
		}
	}
	if changed {
		s.env.Mesh.SyncInterest()
	}
}

// enqueue adds pk to cl's inflight store and its queue order.
func (s *Tracker) enqueue(cl *mqtt.Client, pk packets.Packet) {
	if cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&s.env.Broker.Info.Inflight, 1)
	}
	s.mu.Lock()
	ss := s.get(cl.ID)
	ss.order[pk.PacketID] = ss.next
	ss.next++
	s.mu.Unlock()
}

// packet rebuilds the inflight packet of a handed-over message.
func (m handoverMsg) packet() (packets.Packet, bool) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: m.Type}, PacketID: m.ID}
	switch m.Type {
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1 // [MQTT-3.6.1-1]
		return pk, true
	case packets.Pubrec, packets.Puback, packets.Pubcomp:
		return pk, true
	case packets.Publish:
	default:
		return pk, false
	}
	e, err := meshwire.DecodeEnvelope(m.Env)
	if err != nil || e.QoS == 0 {
		return pk, false
	}
	pk.FixedHeader.Qos, pk.FixedHeader.Retain = e.QoS, e.Retain
	pk.TopicName, pk.Payload, pk.Properties = e.Topic, e.Payload, e.Props
	pk.ProtocolVersion = 5
	if e.HasExpiry {
		pk.Expiry = time.Now().Unix() + int64(e.Expiry)
	}
	meshwire.SetTag(&pk, meshwire.Tag{ID: m.Tag})
	return pk, true
}
