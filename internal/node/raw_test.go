package node

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

// rawV5 is an MQTT v5 connection driven packet by packet (testutil.RawV5).
type rawV5 struct{ *testutil.RawV5 }

// dialRawV5 sends a CONNECT (changed by opts) and returns the connection
// and the CONNACK.
func dialRawV5(t *testing.T, addr, id string, opts ...func(*packets.Packet)) (*rawV5, packets.Packet) {
	t.Helper()
	c, ack := testutil.DialV5(t, addr, id, waitFor, opts...)
	return &rawV5{c}, ack
}

func (c *rawV5) send(t *testing.T, pk packets.Packet) { t.Helper(); c.Send(t, pk) }

func (c *rawV5) next() (packets.Packet, error) { return c.Next() }
