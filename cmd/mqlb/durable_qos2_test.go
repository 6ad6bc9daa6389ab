package main

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestDurableQoS2PublisherNodeKilled: a persistent QoS 2 publisher whose
// node dies mid-exchange finishes it on another node, and each message
// arrives once [MQTT-4.3.3]: a PUBLISH resent (DUP) because its PUBREC was
// lost is not stored twice, and a PUBREL for a message the dead node stored
// is completed with success, not 0x92 (packet identifier not found).
func TestDurableQoS2PublisherNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := startDurableCluster(t, "replicated")
	sub := newCounter("v5-q2pk-sub-q2", 2)
	c.connect(t, sub, true)
	victim, other := c.nodes[0], c.nodes[1]
	const id = "q2pk-publisher"
	pub := connectPersistentV5(t, victim.tcp, id)
	// 1: PUBREC read, PUBREL not sent. 2: stored, but the client acts as if
	// its PUBREC never came.
	for n := 1; n <= 2; n++ {
		if rec := publishQoS2(t, pub, uint16(n), n, false); rec.ReasonCode != 0 {
			t.Fatalf("PUBREC %d: reason %#x", n, rec.ReasonCode)
		}
	}
	victim.kill()

	// Until JetStream has elected new leaders (4-9 s), the node may refuse
	// the resent PUBLISH (0x80) or send the client away (DISCONNECT 0x88):
	// the client connects again and resends.
	testutil.Eventually(t, 30*time.Second, func() bool {
		pub = connectPersistentV5(t, other.tcp, id)
		rec, err := tryQoS2(t, pub, 2, 2, true)
		if err != nil || rec.ReasonCode != 0 {
			pub.Close()
			return false
		}
		return true
	}, "resent PUBLISH 2 acknowledged")
	for pid := uint16(1); pid <= 2; pid++ {
		if comp := pubrel(t, pub, pid); comp.ReasonCode != 0 {
			t.Errorf("PUBCOMP %d: reason %#x, want 0x00 (the message was stored)", pid, comp.ReasonCode)
		}
	}
	// 3 comes after any second copy of 2 in the session's queue.
	if rec := publishQoS2(t, pub, 3, 3, false); rec.ReasonCode != 0 {
		t.Fatalf("PUBREC 3: reason %#x", rec.ReasonCode)
	}
	pubrel(t, pub, 3)
	settle([]*counter{sub}, []int{1, 2, 3})
	lost, dups := sub.tally([]int{1, 2, 3})
	t.Logf("lost %d, duplicates %d", lost, dups)
	if lost != 0 || dups != 0 {
		t.Errorf("lost %d, duplicates %d (want 0 and 0)", lost, dups)
	}
}

// connectPersistentV5 connects id with a session that outlives the
// connection, retrying while the node cannot serve it yet (a JetStream
// election after a kill); it wants the session present after the first.
func connectPersistentV5(t *testing.T, addr, id string) *testutil.Raw {
	t.Helper()
	var c *testutil.Raw
	testutil.Eventually(t, 30*time.Second, func() bool {
		var ack packets.Packet
		c, ack = testutil.DialV5(t, addr, id, 30*time.Second, func(pk *packets.Packet) {
			pk.Connect.Clean = false
			pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 600, true
		})
		if ack.ReasonCode != 0 {
			c.Close()
		}
		return ack.ReasonCode == 0
	}, "%s connected to %s", id, addr)
	return c
}

func publishQoS2(t *testing.T, c *testutil.Raw, pid uint16, n int, dup bool) packets.Packet {
	t.Helper()
	rec, err := tryQoS2(t, c, pid, n, dup)
	if err != nil {
		t.Fatalf("PUBLISH %d: %v", n, err)
	}
	return rec
}

// tryQoS2 sends a QoS 2 PUBLISH of n and returns the PUBREC.
func tryQoS2(t *testing.T, c *testutil.Raw, pid uint16, n int, dup bool) (packets.Packet, error) {
	t.Helper()
	c.Send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: dup},
		TopicName: durableTopic, PacketID: pid, Payload: []byte(strconv.Itoa(n))})
	return nextOf(c, packets.Pubrec)
}

func pubrel(t *testing.T, c *testutil.Raw, pid uint16) packets.Packet {
	t.Helper()
	c.Send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: pid})
	return expectPacket(t, c, packets.Pubcomp)
}

// expectPacket reads packets until one of type typ.
func expectPacket(t *testing.T, c *testutil.Raw, typ byte) packets.Packet {
	t.Helper()
	pk, err := nextOf(c, typ)
	if err != nil {
		t.Fatalf("waiting for packet type %d: %v", typ, err)
	}
	return pk
}

// nextOf reads packets until one of type typ; a DISCONNECT is an error.
func nextOf(c *testutil.Raw, typ byte) (packets.Packet, error) {
	for {
		pk, err := c.Next()
		switch {
		case err != nil:
			return pk, err
		case pk.FixedHeader.Type == typ:
			return pk, nil
		case pk.FixedHeader.Type == packets.Disconnect:
			return pk, fmt.Errorf("DISCONNECT %#x", pk.ReasonCode)
		}
	}
}
