package node

import (
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestTopicAliases: the CONNACK announces the Topic Alias Maximum
// (mqtt.max_topic_alias, default 10), without which a client may use no
// alias [MQTT-3.2.2-17]; an alias above it ends the connection with
// DISCONNECT 0x94, and an alias-only PUBLISH with an alias never set with
// DISCONNECT 0x82 (MQTT 5 §3.3.2.3.4) — mochi dropped it silently, leaving
// its packet id unanswered.
func TestTopicAliases(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	cl := dialV5(t, addr, "alias-max", true, 0)
	if tam := cl.connack.Properties.TopicAliasMaximum; tam == nil || *tam != config.DefaultMaxTopicAlias {
		t.Fatalf("CONNACK Topic Alias Maximum %v, want %d", tam, config.DefaultMaxTopicAlias)
	}
	for _, tc := range []struct {
		name  string
		alias byte
		topic string
		code  byte
	}{{"alias never set", 2, "", 0x82}, {"alias over the maximum", config.DefaultMaxTopicAlias + 1, "a/b", 0x94}} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, addr)
			write(t, c, rawConnect(5, "alias-"+tc.topic, "", ""))
			if code := readConnack(t, c, 5); code != 0 {
				t.Fatalf("CONNACK 0x%02x", code)
			}
			// PUBLISH QoS 1, packet id 1, properties: Topic Alias, payload "x".
			body := []byte{0, byte(len(tc.topic))}
			body = append(body, tc.topic...)
			body = append(body, 0, 1, 3, 0x23, 0, tc.alias, 'x')
			write(t, c, append([]byte{0x32, byte(len(body))}, body...))
			got := readUntilClosed(t, c)
			if len(got) < 3 || got[0] != 0xe0 || got[2] != tc.code {
				t.Fatalf("sent %x; want DISCONNECT 0x%02x, then the close", got, tc.code)
			}
		})
	}
}

// TestRefusedPublishSetsAlias: a PUBLISH that sets a topic alias and is
// refused by the ACL still sets the alias (the alias belongs to the
// connection's protocol state, not to the message), and each later use of
// the alias is checked by the ACL as a publish to its topic, as mosquitto
// does. mochi v2.7.9 checks the ACL before it sets the alias, so the
// refused PUBLISH left the alias unset, and the next PUBLISH that used it
// ended the connection with DISCONNECT 0x82 protocol error although the
// client did nothing wrong.
func TestRefusedPublishSetsAlias(t *testing.T) {
	n := soloNode(t, func(c *config.Node) {
		c.Auth.ACL = []config.ACLRule{{Allow: false, Access: "publish", Topic: "devices/+/b"}} // default: allow
	})
	addr := n.ListenerAddr("tcp")
	sub := dialV5(t, addr, "alias-acl-sub", true, 0)
	sub.sub(t, "devices/#", 1)
	c, ack := testutil.DialV5(t, addr, "alias-acl", waitFor)
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	var id uint16
	publish := func(topic string, alias uint16, qos byte, payload string) (code byte) {
		t.Helper()
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: topic,
			Payload: []byte(payload)}
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = alias, true
		if qos > 0 {
			id++
			pk.PacketID = id
		}
		c.Send(t, pk)
		if qos == 0 {
			return 0
		}
		ack, err := c.Next()
		if err != nil || ack.FixedHeader.Type != packets.Puback || ack.PacketID != id {
			t.Fatalf("PUBLISH %q alias %d QoS 1: read type %d code 0x%02x id %d, %v; want its PUBACK",
				topic, alias, ack.FixedHeader.Type, ack.ReasonCode, ack.PacketID, err)
		}
		return ack.ReasonCode
	}
	publish("devices/bob/b", 2, 0, "refused, sets alias 2")
	if code := publish("", 2, 1, "refused through alias 2"); code != packets.ErrNotAuthorized.Code {
		t.Errorf("QoS 1 through alias 2 (devices/bob/b, refused): PUBACK 0x%02x, want 0x87", code)
	}
	if code := publish("devices/bob/b", 3, 1, "refused, sets alias 3"); code != packets.ErrNotAuthorized.Code {
		t.Errorf("QoS 1 devices/bob/b setting alias 3: PUBACK 0x%02x, want 0x87", code)
	}
	if code := publish("", 3, 1, "refused through alias 3"); code != packets.ErrNotAuthorized.Code {
		t.Errorf("QoS 1 through alias 3 (devices/bob/b, refused): PUBACK 0x%02x, want 0x87", code)
	}
	// The alias now names an allowed topic: its uses pass.
	if code := publish("devices/bob/a", 2, 1, "allowed, sets alias 2"); code != 0 {
		t.Errorf("QoS 1 devices/bob/a setting alias 2: PUBACK 0x%02x, want 0", code)
	}
	if code := publish("", 2, 1, "allowed through alias 2"); code != 0 {
		t.Errorf("QoS 1 through alias 2 (devices/bob/a): PUBACK 0x%02x, want 0", code)
	}
	got := sub.wait(t, 2)
	time.Sleep(100 * time.Millisecond) // anything refused that would still come
	for _, m := range append(got, sub.all()[len(got):]...) {
		if m.topic != "devices/bob/a" || !strings.HasPrefix(m.payload, "allowed") {
			t.Errorf("subscriber received %q on %s; want only the allowed messages on devices/bob/a", m.payload, m.topic)
		}
	}
}
