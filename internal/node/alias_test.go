package node

import (
	"testing"

	"github.com/mqlb/mqlb/internal/config"
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
