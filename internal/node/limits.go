package node

import (
	"bytes"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// limitsHook enforces per-client rules mochi v2.7.9 lacks: a cap on a
// client's subscriptions (mqtt.max_subscriptions_per_client), and no
// DISCONNECT packet to an MQTT 3.1.1 client.
type limitsHook struct {
	mqtt.HookBase
	maxSubs int // 0: no limit
}

var _ mqtt.Hook = (*limitsHook)(nil)

func (h *limitsHook) ID() string { return "mqlb-limits" }

var limitsProvided = []byte{mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnPacketEncode}

func (h *limitsHook) Provides(b byte) bool { return bytes.IndexByte(limitsProvided, b) >= 0 }

// overQuota replaces a filter refused for the subscription cap: '#' not last
// makes it invalid [MQTT-4.7.1-2], so mochi subscribes nothing for it and
// answers 0x8F (v5) / 0x80 (3.1.1); OnSubscribed turns 0x8F into 0x97.
const overQuota = "#/mqlb-subscription-quota-exceeded"

// OnSubscribe refuses the filters of a SUBSCRIBE that would take the client
// over its subscription cap. Filters it already holds are replaced, not
// added, so they always pass.
func (h *limitsHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if h.maxSubs <= 0 || cl.Net.Inline {
		return pk
	}
	count := cl.State.Subscriptions.Len()
	var filters packets.Subscriptions
	allowed := make(map[string]bool, len(pk.Filters)) // a filter repeated in one packet replaces the first [MQTT-3.8.4-3]
	for i, sub := range pk.Filters {
		ok, again := allowed[sub.Filter]
		if !again {
			_, held := cl.State.Subscriptions.Get(sub.Filter)
			ok = held || count < h.maxSubs
			if !held && ok {
				count++
			}
			allowed[sub.Filter] = ok
		}
		if ok {
			continue
		}
		if filters == nil {
			filters = append(packets.Subscriptions(nil), pk.Filters...) // the packet's own slice stays as read
		}
		filters[i].Filter = overQuota
	}
	if filters != nil {
		pk.Filters = filters
	}
	return pk
}

// OnSubscribed answers the refused filters with 0x97 Quota exceeded in v5
// (v5 §3.9.3); in 3.1.1 mochi already answers 0x80 Failure. The codes are the
// SUBACK's own, which mochi writes after this hook.
func (h *limitsHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Properties.ProtocolVersion < 5 {
		return
	}
	for i, sub := range pk.Filters {
		if sub.Filter == overQuota && i < len(codes) {
			codes[i] = packets.ErrQuotaExceeded.Code
		}
	}
}

// OnPacketEncode drops a DISCONNECT to an MQTT 3.1.1 (or 3.1) client: in
// 3.1.1 only the client sends DISCONNECT (§3.14), and a server that refuses
// something closes the network connection [MQTT-4.8.0-1]. mochi's
// DisconnectClient writes one whatever the version; a packet type mochi
// cannot encode makes its WritePacket send nothing, and it still closes the
// connection afterwards.
func (h *limitsHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Disconnect && cl.Properties.ProtocolVersion < 5 {
		pk.FixedHeader.Type = packets.Reserved
	}
	return pk
}
