package testutil

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Raw is an MQTT 5 or 3.1.1 connection driven packet by packet, for what a
// library client will not send (or hides): packets encoded and decoded by
// mochi's packets package.
type Raw struct {
	net.Conn
	r       *bufio.Reader
	version byte // 5, or 4 for 3.1.1
}

// DialV5 sends a v5 CONNECT (changed by opts) and returns the connection
// and the CONNACK; the connection's deadline is now + wait, and it closes
// when the test ends.
func DialV5(t testing.TB, addr, id string, wait time.Duration, opts ...func(*packets.Packet)) (*Raw, packets.Packet) {
	t.Helper()
	return dialRaw(t, 5, addr, id, wait, opts...)
}

// DialV311 is DialV5 for MQTT 3.1.1.
func DialV311(t testing.TB, addr, id string, wait time.Duration, opts ...func(*packets.Packet)) (*Raw, packets.Packet) {
	t.Helper()
	return dialRaw(t, 4, addr, id, wait, opts...)
}

func dialRaw(t testing.TB, version byte, addr, id string, wait time.Duration, opts ...func(*packets.Packet)) (*Raw, packets.Packet) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	c := &Raw{Conn: conn, r: bufio.NewReader(conn), version: version}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: id}}
	for _, o := range opts {
		o(&pk)
	}
	c.Send(t, pk)
	ack, err := c.Next()
	if err != nil || ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("%s: no CONNACK: %v %v", id, ack.FixedHeader, err)
	}
	return c, ack
}

// Send writes one packet.
func (c *Raw) Send(t testing.TB, pk packets.Packet) {
	t.Helper()
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1 // [MQTT-3.6.1-1]
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Subscribe:
		pk.FixedHeader.Qos = 1 // [MQTT-3.8.1-1]
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		pk.FixedHeader.Qos = 1 // [MQTT-3.10.1-1]
		err = pk.UnsubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		t.Fatalf("RawV5 cannot send %v", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// Next reads one packet (CONNACK, PUBLISH, the acknowledgements and
// DISCONNECT decoded; others with their fixed header only).
func (c *Raw) Next() (packets.Packet, error) {
	pk := packets.Packet{ProtocolVersion: c.version}
	b, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
		if n == 1 && c.version == 5 {
			pk.ReasonCode = body[0] // a reason code without properties, which mochi skips
		}
	}
	return pk, err
}
