package node

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// pidSwap works around mochi keeping one inflight store per client for
// both directions: it answers a SUBSCRIBE or UNSUBSCRIBE whose packet id
// equals that of one of its own QoS 1/2 deliveries in flight with 0x91
// (packet identifier in use), though client and server number their
// packets independently [MQTT-2.2.1-3]. A client that subscribes again when
// it resumes a session with messages in flight (mosquitto_sub does) had its
// subscription refused and gave up. The node hands mochi such a packet
// under a free id and puts the client's id back into the SUBACK/UNSUBACK.
// mochi answers in the client's read loop, before the next packet is read,
// so one swap per client is pending at most.
type pidSwap struct {
	pending sync.Map // *mqtt.Client → pidPair
}

type pidPair struct{ client, inner uint16 }

// read gives pk a free packet id if its own is taken (OnPacketRead).
func (s *pidSwap) read(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if t := pk.FixedHeader.Type; t != packets.Subscribe && t != packets.Unsubscribe {
		return pk
	}
	if _, taken := cl.State.Inflight.Get(pk.PacketID); !taken {
		return pk
	}
	for id := uint16(65535); id > 0; id-- {
		if _, taken := cl.State.Inflight.Get(id); !taken {
			s.pending.Store(cl, pidPair{client: pk.PacketID, inner: id})
			pk.PacketID = id
			return pk
		}
	}
	return pk // every id taken: mochi refuses it
}

// write puts the client's packet id back into the answer (OnPacketEncode).
func (s *pidSwap) write(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if t := pk.FixedHeader.Type; t != packets.Suback && t != packets.Unsuback {
		return pk
	}
	if v, ok := s.pending.Load(cl); ok && v.(pidPair).inner == pk.PacketID {
		s.pending.Delete(cl)
		pk.PacketID = v.(pidPair).client
	}
	return pk
}

func (s *pidSwap) forget(cl *mqtt.Client) { s.pending.Delete(cl) }
