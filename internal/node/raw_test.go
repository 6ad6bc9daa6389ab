package node

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

// rawConn is an MQTT v5 (or, from dialRawV311, 3.1.1) connection driven
// packet by packet (testutil.Raw).
type rawConn struct{ *testutil.Raw }

// dialRawV5 sends a CONNECT (changed by opts) and returns the connection
// and the CONNACK.
func dialRawV5(t *testing.T, addr, id string, opts ...func(*packets.Packet)) (*rawConn, packets.Packet) {
	t.Helper()
	c, ack := testutil.DialV5(t, addr, id, waitFor, opts...)
	return &rawConn{c}, ack
}

// dialRawV311 is dialRawV5 for MQTT 3.1.1.
func dialRawV311(t *testing.T, addr, id string, opts ...func(*packets.Packet)) (*rawConn, packets.Packet) {
	t.Helper()
	c, ack := testutil.DialV311(t, addr, id, waitFor, opts...)
	return &rawConn{c}, ack
}

func (c *rawConn) send(t *testing.T, pk packets.Packet) { t.Helper(); c.Send(t, pk) }

func (c *rawConn) next() (packets.Packet, error) { return c.Next() }
