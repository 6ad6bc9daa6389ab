package node

import (
	"bytes"
	"testing"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// TestV311ConnackCodes: a 3.1.x client refused at CONNECT is answered with
// a 3.1.1 return code, as mosquitto does, never a v5 reason code (mochi sent
// 0x80 and 0x82, which no 3.1.1 client can read): an empty client id with
// clean session 0 gets 0x02 identifier rejected [MQTT-3.1.3-8], an unknown
// protocol level 0x01 [MQTT-3.1.2-2]; a CONNECT whose reserved flag is set
// is closed without an answer [MQTT-3.1.2-3].
func TestV311ConnackCodes(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	level6 := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 60, 0, 0}
	reserved := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "r", CleanStart: true, KeepAlive: 30})
	reserved[9] |= 0x01 // the connect flags' reserved bit
	for _, tc := range []struct {
		name    string
		connect []byte
		want    []byte
	}{
		{"empty id, clean session 0", mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, KeepAlive: 30}), []byte{0x20, 0x02, 0x00, 0x02}},
		{"protocol level 6", level6, []byte{0x20, 0x02, 0x00, 0x01}},
		{"reserved flag set", reserved, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, addr)
			write(t, c, tc.connect)
			if got := readUntilClosed(t, c); !bytes.Equal(got, tc.want) {
				t.Errorf("answered % x; want % x, then the close", got, tc.want)
			}
		})
	}
}

// TestV5ReservedFlagMalformed: a v5 CONNECT whose reserved flag is set is a
// Malformed Packet [MQTT-3.1.2-3]: CONNACK 0x81 (mochi answered 0x82
// protocol error).
func TestV5ReservedFlagMalformed(t *testing.T) {
	n := soloNode(t, nil)
	connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 5, ClientID: "r5", CleanStart: true, KeepAlive: 30})
	connect[9] |= 0x01 // the connect flags' reserved bit
	c := rawDial(t, n.ListenerAddr("tcp"))
	write(t, c, connect)
	got := readUntilClosed(t, c)
	if len(got) < 4 || got[0] != 0x20 || got[3] != 0x81 {
		t.Errorf("answered % x; want CONNACK 0x81 malformed packet", got)
	}
}
