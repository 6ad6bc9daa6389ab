package node

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

// A topic name whose first level is $share: the syntax of shared
// subscription filters [MQTT-4.8.2-1], refused as a name (see
// refuseShareName). The only filter that matches it is a shared one with
// it as its inner filter, the witness here; mochi delivered to it.
const (
	shareTopic   = "$share/g/sn"
	shareWitness = "$share/w/" + shareTopic
)

// TestPublishToShareNameRefused: a PUBLISH to a $share topic is neither
// delivered nor retained. A v5 QoS 1/2 one gets PUBACK/PUBREC 0x90 topic
// name invalid; a 3.1.1 one is acknowledged (PUBREL answered by PUBCOMP)
// and dropped, a QoS 0 one dropped, as mosquitto 2.0 does.
func TestPublishToShareNameRefused(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	witness := dialV5(t, addr, "sn-witness", true, 0)
	witness.sub(t, shareWitness, 1)
	witness.sub(t, "sn/fence", 1)
	for _, version := range []byte{5, 4} {
		dial := dialRawV5
		if version == 4 {
			dial = dialRawV311
		}
		pub, _ := dial(t, addr, "sn-pub")
		for qos := byte(0); qos <= 2; qos++ {
			var pid uint16
			if qos > 0 {
				pid = uint16(10 + qos)
			}
			pub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: true},
				PacketID: pid, TopicName: shareTopic, Payload: []byte("shared-name")})
			if qos == 0 {
				continue
			}
			ack, err := pub.next()
			want := map[byte]byte{1: packets.Puback, 2: packets.Pubrec}[qos]
			code := map[byte]byte{5: packets.ErrTopicNameInvalid.Code, 4: 0}[version]
			if err != nil {
				t.Fatalf("v%d QoS %d: no acknowledgement: %v", version, qos, err)
			}
			if ack.FixedHeader.Type != want || ack.PacketID != pid || ack.ReasonCode != code {
				t.Errorf("v%d QoS %d: type %d id %d reason %#x; want type %d id %d reason %#x",
					version, qos, ack.FixedHeader.Type, ack.PacketID, ack.ReasonCode, want, pid, code)
			}
			if qos == 2 && version == 4 {
				pub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: pid})
				if comp, err := pub.next(); err != nil || comp.FixedHeader.Type != packets.Pubcomp || comp.PacketID != pid {
					t.Fatalf("3.1.1 PUBREL: %v id %d (%v), want PUBCOMP %d", comp.FixedHeader.Type, comp.PacketID, err, pid)
				}
			}
		}
	}
	// Through a topic alias: set with the name, then used alone.
	pub, _ := dialRawV5(t, addr, "sn-alias")
	for i, name := range []string{shareTopic, ""} {
		pid := uint16(20 + i)
		pub.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: pid,
			TopicName: name, Properties: packets.Properties{TopicAlias: 1, TopicAliasFlag: true}, Payload: []byte("shared-name")})
		if ack, err := pub.next(); err != nil || ack.PacketID != pid || ack.ReasonCode != packets.ErrTopicNameInvalid.Code {
			t.Errorf("aliased publish %d: type %d id %d reason %#x (%v); want PUBACK 0x90", i, ack.FixedHeader.Type, ack.PacketID, ack.ReasonCode, err)
		}
	}
	dialV5(t, addr, "sn-fence", true, 0).send(t, "sn/fence", 1, "fence")
	witness.waitPayload(t, "fence")
	if got := payloadsOn(witness.all(), shareTopic); len(got) > 0 {
		t.Errorf("a subscriber matching %s got %q", shareTopic, got)
	}
	if _, kept := n.broker.Topics.Retained.GetAll()[shareTopic]; kept {
		t.Errorf("%s retained", shareTopic)
	}
}

// TestShareNameWillDropped: a will whose topic is a $share one is dropped,
// the connection taken (mosquitto 2.0 takes it and never publishes the
// will), in both versions.
func TestShareNameWillDropped(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	witness := dialV5(t, addr, "snw-witness", true, 0)
	witness.sub(t, shareWitness, 1)
	witness.sub(t, "snw/fence", 1)
	for _, version := range []byte{5, 4} {
		dial := dialRawV5
		if version == 4 {
			dial = dialRawV311
		}
		c, ack := dial(t, addr, "snw-dying", func(pk *packets.Packet) {
			pk.Connect.WillFlag, pk.Connect.WillQos, pk.Connect.WillRetain = true, 1, true
			pk.Connect.WillTopic, pk.Connect.WillPayload = shareTopic, []byte("will")
		})
		if ack.ReasonCode != 0 {
			t.Fatalf("v%d CONNACK %#x, want 0", version, ack.ReasonCode)
		}
		c.Close() // no DISCONNECT: a will would go out
	}
	// The will goes out as mochi sees the connection end: the fence after
	// both ends on the node.
	testutil.Eventually(t, waitFor, func() bool { return cl0(n, "snw-dying") == nil }, "snw-dying still connected")
	dialV5(t, addr, "snw-fence", true, 0).send(t, "snw/fence", 1, "fence")
	witness.waitPayload(t, "fence")
	if got := payloadsOn(witness.all(), shareTopic); len(got) > 0 {
		t.Errorf("a subscriber matching %s got the will %q", shareTopic, got)
	}
	if _, kept := n.broker.Topics.Retained.GetAll()[shareTopic]; kept {
		t.Errorf("the will %s retained", shareTopic)
	}
}
