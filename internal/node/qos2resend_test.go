package node

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
)

// expect reads packets until one of type typ with packet id pid, failing on
// a read error.
func (c *rawConn) expect(t *testing.T, typ byte, pid uint16) packets.Packet {
	t.Helper()
	for {
		pk, err := c.next()
		if err != nil {
			t.Fatalf("waiting for packet type %d id %d: %v", typ, pid, err)
		}
		if pk.FixedHeader.Type == typ && pk.PacketID == pid {
			return pk
		}
	}
}

// TestQoS2ResentAfterPubrel: paho.mqtt.golang (1.5) keeps a QoS 2 PUBLISH in
// its store, not the PUBREL it sent after the PUBREC, and sends the PUBLISH
// again (DUP) when the connection drops before the PUBCOMP. By the protocol
// that is a new message under a free packet id, and the node stored and
// delivered it twice (an outside audit saw 105–432 such duplicates per
// subscriber after a node of three was killed). With replicated durability
// the node now knows the exchange it released and answers such a resend
// PUBREC without storing it again; a different message resent under the
// same packet id is still a new message.
func TestQoS2ResentAfterPubrel(t *testing.T) {
	cl, err := startCluster("qos2resend", 2, func(c *config.Node) { c.Sessions.Durability = "replicated" })
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	cl.ready(t)
	sub := dialV5(t, cl.addr(1), "resend-sub", false, 3600)
	if code := subCode(t, sub, "resend/#"); code != 1 {
		t.Fatalf("subscribe: 0x%02x", code)
	}

	publish := func(c *rawConn, pid uint16, payload string, dup bool) {
		t.Helper()
		c.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: dup},
			PacketID: pid, TopicName: "resend/t", Payload: []byte(payload)})
		if rec := c.expect(t, packets.Pubrec, pid); rec.ReasonCode >= 0x80 {
			t.Fatalf("PUBREC 0x%02x for %q", rec.ReasonCode, payload)
		}
		c.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: pid})
	}
	pub, _ := dialRawV5(t, cl.addr(0), "resend-pub", resumeSession(10))
	publish(pub, 1, "probe", false)
	pub.expect(t, packets.Pubcomp, 1)
	sub.waitPayload(t, "probe")

	publish(pub, 7, "once", false)
	_ = pub.Close() // the PUBREL went out; no PUBCOMP read
	pub, _ = dialRawV5(t, cl.addr(0), "resend-pub", resumeSession(10))
	publish(pub, 7, "once", true) // the client's store still holds the PUBLISH
	pub.expect(t, packets.Pubcomp, 7)
	// a different message under the same id, DUP as if its first attempt was lost
	publish(pub, 7, "another", true)
	pub.expect(t, packets.Pubcomp, 7)
	publish(pub, 8, "last", false)
	pub.expect(t, packets.Pubcomp, 8)

	sub.waitPayload(t, "last")
	n := map[string]int{}
	for _, m := range sub.all() {
		n[m.payload]++
	}
	if n["once"] != 1 || n["another"] != 1 {
		t.Fatalf("received %v: want \"once\" and \"another\" once each", n)
	}
}
