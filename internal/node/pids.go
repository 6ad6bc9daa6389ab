package node

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// pidSwap works around mochi keeping one inflight store per client for
// both directions, though client and server number their packets
// independently [MQTT-2.2.1-3]:
//
//   - mochi answered a SUBSCRIBE or UNSUBSCRIBE whose packet id equals that
//     of one of its own QoS 1/2 deliveries in flight with 0x91 (packet
//     identifier in use): a client that subscribes again when it resumes a
//     session with messages in flight (mosquitto_sub does) had its
//     subscription refused and gave up;
//   - a client's own QoS 1/2 PUBLISH under such an id made mochi delete the
//     delivery from the store: not acknowledged yet, it was never sent
//     again when the client reconnected (lost with memory durability).
//
// The node hands mochi such a packet under a free id and puts the client's
// id back into the answer (SUBACK, UNSUBACK, PUBACK, PUBREC, PUBCOMP). A
// QoS 2 exchange keeps its id until the PUBCOMP; the mapping lives as long
// as the connection (a PUBREL resent after a reconnect gets 0x92).
type pidSwap struct {
	pending sync.Map // *mqtt.Client → pidPair: the SUBSCRIBE/UNSUBSCRIBE being answered
	pubs    sync.Map // *mqtt.Client → *pubSwaps
}

type pidPair struct{ client, inner uint16 }

// pubSwaps are a client's publishes handed to mochi under another id.
type pubSwaps struct {
	mu       sync.Mutex
	toClient map[uint16]uint16 // inner → client id, until the PUBACK/PUBCOMP
	toInner  map[uint16]uint16 // client id → inner, QoS 2 until the PUBCOMP
}

// read gives pk a free packet id if its own is taken (OnPacketRead).
func (s *pidSwap) read(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Subscribe, packets.Unsubscribe:
		if _, taken := cl.State.Inflight.Get(pk.PacketID); !taken {
			return pk
		}
		if id, ok := freeID(cl, nil); ok {
			s.pending.Store(cl, pidPair{client: pk.PacketID, inner: id})
			pk.PacketID = id
		}
		return pk // every id taken: mochi refuses it
	case packets.Publish:
		if pk.FixedHeader.Qos == 0 {
			return pk
		}
		if ps := s.swaps(cl, false); ps != nil && pk.FixedHeader.Qos == 2 {
			ps.mu.Lock()
			inner, ok := ps.toInner[pk.PacketID] // a resent QoS 2 PUBLISH
			ps.mu.Unlock()
			if ok {
				pk.PacketID = inner
				return pk
			}
		}
		if f, taken := cl.State.Inflight.Get(pk.PacketID); !taken || (f.FixedHeader.Type != packets.Publish && f.FixedHeader.Type != packets.Pubrel) {
			return pk // free, or the client's own QoS 2 exchange: mochi's to judge
		}
		ps := s.swaps(cl, true)
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if id, ok := freeID(cl, ps.toClient); ok {
			ps.toClient[id] = pk.PacketID
			if pk.FixedHeader.Qos == 2 {
				ps.toInner[pk.PacketID] = id
			}
			pk.PacketID = id
		}
	case packets.Pubrel:
		if ps := s.swaps(cl, false); ps != nil {
			ps.mu.Lock()
			if inner, ok := ps.toInner[pk.PacketID]; ok {
				pk.PacketID = inner
			}
			ps.mu.Unlock()
		}
	}
	return pk
}

// write puts the client's packet id back into the answer (OnPacketEncode).
func (s *pidSwap) write(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch t := pk.FixedHeader.Type; t {
	case packets.Suback, packets.Unsuback:
		if v, ok := s.pending.Load(cl); ok && v.(pidPair).inner == pk.PacketID {
			s.pending.Delete(cl)
			pk.PacketID = v.(pidPair).client
		}
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
		ps := s.swaps(cl, false)
		if ps == nil {
			return pk
		}
		ps.mu.Lock()
		defer ps.mu.Unlock()
		id, ok := ps.toClient[pk.PacketID]
		if !ok {
			return pk
		}
		if t != packets.Pubrec || pk.ReasonCode >= packets.ErrUnspecifiedError.Code { // the exchange is over [MQTT-4.3.3-4]
			delete(ps.toClient, pk.PacketID)
			delete(ps.toInner, id)
		}
		pk.PacketID = id
	}
	return pk
}

// clientID returns the id the client gave a publish mochi holds as inner.
func (s *pidSwap) clientID(cl *mqtt.Client, inner uint16) uint16 {
	if ps := s.swaps(cl, false); ps != nil {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if id, ok := ps.toClient[inner]; ok {
			return id
		}
	}
	return inner
}

func (s *pidSwap) swaps(cl *mqtt.Client, create bool) *pubSwaps {
	if v, ok := s.pubs.Load(cl); ok {
		return v.(*pubSwaps)
	}
	if !create {
		return nil
	}
	v, _ := s.pubs.LoadOrStore(cl, &pubSwaps{toClient: map[uint16]uint16{}, toInner: map[uint16]uint16{}})
	return v.(*pubSwaps)
}

// freeID returns an id neither in cl's inflight store nor in used, from the
// top of the range (mochi numbers its deliveries from the bottom).
func freeID(cl *mqtt.Client, used map[uint16]uint16) (uint16, bool) {
	for id := uint16(65535); id > 0; id-- {
		if _, taken := cl.State.Inflight.Get(id); taken {
			continue
		}
		if _, taken := used[id]; !taken {
			return id, true
		}
	}
	return 0, false
}

func (s *pidSwap) forget(cl *mqtt.Client) {
	s.pending.Delete(cl)
	s.pubs.Delete(cl)
}
