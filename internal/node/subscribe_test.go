package node

import (
	"fmt"
	"io"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Malformed SUBSCRIBE and UNSUBSCRIBE packets (inbound, mqttwire
// CheckSubscription): an MQTT 5 client gets DISCONNECT 0x81 malformed
// packet (0x82 protocol error where the spec says so) before the close, as
// from mosquitto 2.0; a 3.1.1 one is closed [MQTT-4.8.0-1]. mochi granted
// some ("a+", "$share//x") and answered others with SUBACK 0x8F.

// badFilters break the filter rules: '#' last and alone in its level
// [MQTT-4.7.1-2], '+' alone in its level [MQTT-4.7.1-3], not empty
// [MQTT-4.7.3-1] (v3.1.1 numbering), a shared one with a share name and a
// filter [MQTT-4.8.2-1] [MQTT-4.8.2-2].
var badFilters = []string{"a/#/b", "a+", "a/b#", "", "$share/g", "$share//x", "$share/g/", "$share/g+/x"}

// TestInvalidFilterDisconnects: each bad filter, in a SUBSCRIBE or an
// UNSUBSCRIBE next to a valid one, gets an MQTT 5 client DISCONNECT 0x81
// and a 3.1.1 client a close without an answer; what came before it in
// the same write is answered.
func TestInvalidFilterDisconnects(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	for _, version := range []byte{5, 4} {
		for _, typ := range []byte{packets.Subscribe, packets.Unsubscribe} {
			for i, f := range badFilters {
				id := fmt.Sprintf("badf-%d-%d-%d", version, typ, i)
				t.Run(id, func(t *testing.T) {
					c := dialVersion(t, addr, id, version)
					pingreq := []byte{0xc0, 0}
					write(t, c, append(subscriptionBytes(t, version, typ, "ok/t", f), pingreq...))
					want := byte(packets.Suback)
					if typ == packets.Unsubscribe {
						want = packets.Unsuback
					}
					pk, err := c.next()
					if err != nil || pk.FixedHeader.Type != want {
						t.Fatalf("filter %q: %v (%v), want the answer to the packet before it", f, pk.FixedHeader.Type, err)
					}
					expectRefusal(t, c, version, packets.ErrMalformedPacket.Code, fmt.Sprintf("filter %q", f))
				})
			}
		}
	}
}

// TestSubscribeOptionsRefused: a v5 SUBSCRIBE with reserved option bits
// set is malformed (0x81) [MQTT-3.8.3-5]; QoS 3, Retain Handling 3, No
// Local on a shared subscription [MQTT-3.8.3-4] and a Subscription
// Identifier of 0 are what the spec calls protocol errors (0x82; mosquitto
// 2.0 answers 0x81). mochi granted them, and answered No Local on a shared
// one with SUBACK 0x82, no SUBACK code. A 3.1.1 one with a requested QoS
// byte above 2 is closed [MQTT-3-8.3-4].
func TestSubscribeOptionsRefused(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	for i, tc := range []struct {
		version     byte
		props, opts []byte
		filter      string
		code        byte
	}{
		{5, nil, []byte{0xc1}, "a", packets.ErrMalformedPacket.Code},
		{5, nil, []byte{3}, "a", packets.ErrProtocolViolation.Code},
		{5, nil, []byte{0x31}, "a", packets.ErrProtocolViolation.Code},
		{5, nil, []byte{0x05}, "$share/g/a", packets.ErrProtocolViolation.Code},
		{5, []byte{0x0b, 0}, []byte{1}, "a", packets.ErrProtocolViolation.Code},
		{4, nil, []byte{3}, "a", 0},
		{4, nil, []byte{0x81}, "a", 0},
	} {
		what := fmt.Sprintf("v%d options %#x properties %x on %q", tc.version, tc.opts, tc.props, tc.filter)
		t.Run(what, func(t *testing.T) {
			c := dialVersion(t, addr, fmt.Sprintf("bad-opts-%d", i), tc.version)
			body := []byte{0, 1}
			if tc.version == 5 {
				body = append(append(body, byte(len(tc.props))), tc.props...)
			}
			body = append(append(append(body, 0, byte(len(tc.filter))), tc.filter...), tc.opts...)
			write(t, c, append([]byte{0x82, byte(len(body))}, body...))
			expectRefusal(t, c, tc.version, tc.code, what)
		})
	}
}

// dialVersion connects a raw clean client of version 5 or 4 (3.1.1).
func dialVersion(t *testing.T, addr, id string, version byte) *rawConn {
	t.Helper()
	if version == 5 {
		c, _ := dialRawV5(t, addr, id)
		return c
	}
	c, _ := dialRawV311(t, addr, id)
	return c
}

// subscriptionBytes encodes two SUBSCRIBEs or UNSUBSCRIBEs (QoS 1 asked):
// one of filter good (packet id 2), then one of good and bad (id 1), which
// mochi's encoder would not write.
func subscriptionBytes(t *testing.T, version, typ byte, good, bad string) []byte {
	t.Helper()
	b := []byte{0, 1}
	if version == 5 {
		b = append(b, 0) // no properties
	}
	for _, f := range []string{good, bad} {
		b = append(append(b, byte(len(f)>>8), byte(len(f))), f...)
		if typ == packets.Subscribe {
			b = append(b, 1)
		}
	}
	first := byte(0x82)
	if typ == packets.Unsubscribe {
		first = 0xa2
	}
	alone := []byte{0, 2}
	if version == 5 {
		alone = append(alone, 0)
	}
	alone = append(append(alone, byte(len(good)>>8), byte(len(good))), good...)
	if typ == packets.Subscribe {
		alone = append(alone, 1)
	}
	return append(append(mqttwire.AppendVarint([]byte{first}, len(alone)), alone...),
		append(mqttwire.AppendVarint([]byte{first}, len(b)), b...)...)
}

// expectRefusal reads what c gets next: for v5 DISCONNECT code, then the
// close; for 3.1.1 (code 0) the close alone.
func expectRefusal(t *testing.T, c *rawConn, version, code byte, what string) {
	t.Helper()
	if version == 5 {
		pk, err := c.next()
		if err != nil || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != code {
			t.Fatalf("%s: %v reason %#x (%v), want DISCONNECT %#x", what, pk.FixedHeader.Type, pk.ReasonCode, err, code)
		}
	}
	if pk, err := c.next(); err != io.EOF {
		t.Fatalf("%s: then %v (%v), want the connection closed", what, pk.FixedHeader.Type, err)
	}
}
