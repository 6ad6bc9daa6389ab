package node

import (
	"fmt"
	"slices"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

// DUP on deliveries from a session's queue [MQTT-3.3.1-1]: 0 on a
// message's first transmission, 1 on every one after it, on this
// connection of the session or an earlier one.

// TestDupOnlyWhenSentBefore: a persistent session's messages queued while
// it was offline come with DUP 0 when it resumes, and with DUP 1 when it
// resumes again without having acknowledged them (memory durability: the
// queue is mochi's inflight store, which mochi resent all with DUP 1).
func TestDupOnlyWhenSentBefore(t *testing.T) {
	for _, version := range []byte{5, 4} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			addr, n := memoryNode(t, fmt.Sprintf("dup-queued-%d", version))
			id := fmt.Sprintf("dup-queued-%d", version)
			sub := dupSession(t, addr, id, version, 0)
			subscribeRaw(t, sub, "dup/t", 2)
			sub.Close()
			waitOffline(t, n, id)
			pub := dialV5(t, addr, id+"-pub", true, 0)
			pub.send(t, "dup/t", 1, "q1")
			pub.send(t, "dup/t", 2, "q2")
			testutil.Eventually(t, waitFor, func() bool { return cl0(n, id).State.Inflight.Len() == 2 }, "two queued")

			sub = dupSession(t, addr, id, version, 0)
			for _, pk := range publishes(t, sub, 2) {
				if pk.FixedHeader.Dup {
					t.Errorf("first delivery of %q (QoS %d) has DUP 1", pk.Payload, pk.FixedHeader.Qos)
				}
			}
			sub.Close() // not acknowledged
			waitOffline(t, n, id)

			sub = dupSession(t, addr, id, version, 0)
			for _, pk := range publishes(t, sub, 2) {
				if !pk.FixedHeader.Dup {
					t.Errorf("second delivery of %q (QoS %d) has DUP 0", pk.Payload, pk.FixedHeader.Qos)
				}
			}
		})
	}
}

// TestDupOnHeldBackResend: messages sent, not acknowledged, and held back
// on resumption by a smaller Receive Maximum (the node's flow control
// sends them as room frees) come with DUP 1 too; before, they went with
// the DUP 0 of their queued copy.
func TestDupOnHeldBackResend(t *testing.T) {
	addr, n := memoryNode(t, "dup-held")
	const id = "dup-held"
	sub := dupSession(t, addr, id, 5, 0)
	subscribeRaw(t, sub, "dup-held/t", 1)
	pub := dialV5(t, addr, id+"-pub", true, 0)
	for _, p := range numbered("m", 0, 4) {
		pub.send(t, "dup-held/t", 1, p)
	}
	for _, pk := range publishes(t, sub, 4) {
		if pk.FixedHeader.Dup {
			t.Errorf("first delivery of %q has DUP 1", pk.Payload)
		}
	}
	sub.Close() // none acknowledged
	waitOffline(t, n, id)

	sub = dupSession(t, addr, id, 5, 2) // two resent, two held back
	for i := range 4 {
		pk := publishes(t, sub, 1)[0]
		if !pk.FixedHeader.Dup {
			t.Errorf("resend %d (%q) has DUP 0; it was sent before", i, pk.Payload)
		}
		sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	}
}

// dupSession connects a persistent session of the given version (v5 with
// Receive Maximum rm when not 0).
func dupSession(t *testing.T, addr, id string, version byte, rm uint16) *rawConn {
	t.Helper()
	if version == 5 {
		c, _ := dialRawV5(t, addr, id, resumeSession(rm))
		return c
	}
	c, _ := dialRawV311(t, addr, id, func(pk *packets.Packet) { pk.Connect.Clean = false })
	return c
}

// subscribeRaw subscribes c to filter and waits for the SUBACK.
func subscribeRaw(t *testing.T, c *rawConn, filter string, qos byte) {
	t.Helper()
	c.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}})
	if pk, err := c.next(); err != nil || pk.FixedHeader.Type != packets.Suback {
		t.Fatalf("SUBACK: %v %v", pk.FixedHeader, err)
	}
}

// publishes reads the next n PUBLISHes (other packets skipped).
func publishes(t *testing.T, c *rawConn, n int) []packets.Packet {
	t.Helper()
	var out []packets.Packet
	for len(out) < n {
		pk, err := c.next()
		if err != nil {
			t.Fatalf("after %d of %d PUBLISHes: %v", len(out), n, err)
		}
		if pk.FixedHeader.Type == packets.Publish {
			out = append(out, pk)
		}
	}
	return out
}

// waitOffline waits until n holds id's session with its connection ended.
func waitOffline(t *testing.T, n *Node, id string) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool {
		cl, ok := n.broker.Clients.Get(id)
		return ok && cl.Closed()
	}, "%s offline", id)
}

// TestDupAcrossHandover: a session taken over from another node
// (memory durability: its queue comes with it) gets DUP 1 on the message
// the other node had written to it, DUP 0 on the one queued there while it
// was offline.
func TestDupAcrossHandover(t *testing.T) {
	c := memoryCluster(t, "dup-move")
	const id = "dup-move"
	sub := dupSession(t, c.addr(0), id, 5, 0)
	subscribeRaw(t, sub, "dup-move/t", 1)
	pub := dialV5(t, c.addr(0), id+"-pub", true, 0)
	pub.send(t, "dup-move/t", 1, "sent")
	if pk := publishes(t, sub, 1)[0]; pk.FixedHeader.Dup {
		t.Errorf("first delivery of %q has DUP 1", pk.Payload)
	}
	sub.Close() // not acknowledged
	waitOffline(t, c.nodes[0], id)
	pub.send(t, "dup-move/t", 1, "queued")
	testutil.Eventually(t, waitFor, func() bool { return cl0(c.nodes[0], id).State.Inflight.Len() == 2 }, "two queued")

	sub = dupSession(t, c.addr(1), id, 5, 0)
	for _, pk := range publishes(t, sub, 2) {
		if want := string(pk.Payload) == "sent"; pk.FixedHeader.Dup != want {
			t.Errorf("%q on the new node: DUP %v, want %v", pk.Payload, pk.FixedHeader.Dup, want)
		}
	}
}

// TestDupReplicated: the same with sessions.durability replicated, where
// the session's queue delivers: DUP 0 for what was queued while the
// session was offline, on its node and on another one taking it over; DUP
// 1 for what was sent and not acknowledged.
func TestDupReplicated(t *testing.T) {
	c := shared(t)
	if !c.nodes[0].durable.On() {
		t.Skip("not replicated")
	}
	const id = "dup-repl"
	sub := dupSession(t, c.addr(0), id, 5, 0)
	subscribeRaw(t, sub, "dup-repl/t", 1)
	pub := dialV5(t, c.addr(0), id+"-pub", true, 0)
	pub.send(t, "dup-repl/t", 1, "sent")
	if pk := publishes(t, sub, 1)[0]; pk.FixedHeader.Dup {
		t.Errorf("first delivery of %q has DUP 1", pk.Payload)
	}
	sub.Close() // not acknowledged
	waitOffline(t, c.nodes[0], id)
	pub.send(t, "dup-repl/t", 1, "queued")

	check := func(where string, sent ...string) {
		t.Helper()
		for _, pk := range publishes(t, sub, 2) {
			if want := slices.Contains(sent, string(pk.Payload)); pk.FixedHeader.Dup != want {
				t.Errorf("%s: %q has DUP %v, want %v", where, pk.Payload, pk.FixedHeader.Dup, want)
			}
		}
	}
	sub = dupSession(t, c.addr(0), id, 5, 0)
	check("resumed on its node", "sent")
	sub.Close() // neither acknowledged
	waitOffline(t, c.nodes[0], id)
	pub.send(t, "dup-repl/t", 1, "later")
	sub = dupSession(t, c.addr(1), id, 5, 0)
	for _, pk := range publishes(t, sub, 3) {
		if want := string(pk.Payload) != "later"; pk.FixedHeader.Dup != want {
			t.Errorf("taken over by another node: %q has DUP %v, want %v", pk.Payload, pk.FixedHeader.Dup, want)
		}
		sub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	}
}
