package node

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// rawV5 is an MQTT v5 connection driven packet by packet, for what a
// library client will not send (or hides): packets encoded and decoded by
// mochi's packets package.
type rawV5 struct {
	net.Conn
	r *bufio.Reader
}

// dialRawV5 sends a CONNECT (changed by opts) and returns the connection
// and the CONNACK.
func dialRawV5(t *testing.T, addr, id string, opts ...func(*packets.Packet)) (*rawV5, packets.Packet) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	c := &rawV5{Conn: conn, r: bufio.NewReader(conn)}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: id}}
	for _, o := range opts {
		o(&pk)
	}
	c.send(t, pk)
	ack, err := c.next()
	if err != nil || ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("%s: no CONNACK: %v %v", id, ack.FixedHeader, err)
	}
	return c, ack
}

// send writes one packet.
func (c *rawV5) send(t *testing.T, pk packets.Packet) {
	t.Helper()
	pk.ProtocolVersion = 5
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	default:
		t.Fatalf("rawV5 cannot send %v", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// next reads one packet (CONNACK, PUBLISH, PUBACK, PUBREC, DISCONNECT
// decoded; others with their fixed header only).
func (c *rawV5) next() (packets.Packet, error) {
	pk := packets.Packet{ProtocolVersion: 5}
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
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}
