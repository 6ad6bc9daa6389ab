// Package inbound guards a client's MQTT byte stream before mochi-mqtt reads
// it.
//
// mochi v2.7.9 allocates the whole packet a fixed header announces before any
// of its bytes arrive (Client.ReadPacket: make([]byte, remaining)), so a
// client that announces 256 MB and trickles bytes makes the node hold 256 MB,
// before authentication when it does so in its first packet. Conn hands
// mochi whole packets only: it keeps a packet's bytes as they arrive, in a
// buffer that grows with them, and releases the packet once it is complete.
// What a connection makes the node hold is then bounded by what it actually
// sent. Conn also refuses, from the fixed header alone and before buffering
// anything: a first packet that is not a CONNECT [MQTT-3.1.0-1], a first
// packet larger than Limits.First, and any packet larger than Limits.Max
// [MQTT-3.2.2-15] (v5 §3.1.2.11.4, total packet size).
//
// An MQTT 5 client whose packet after the CONNECT is over Limits.Max is
// sent DISCONNECT 0x95 (packet too large) before the error is returned
// [MQTT-3.2.2-15] (v5 §4.13), once its CONNACK is out; one whose CONNECT
// is over Limits.First, CONNACK 0x95, as the load balancer answers.
//
// A SUBSCRIBE or UNSUBSCRIBE that is malformed or a protocol error
// (mqttwire.CheckSubscription: an invalid topic filter, reserved option
// bits, ...) is refused too, the packets before it delivered: an MQTT 5
// client is sent DISCONNECT 0x81 (malformed packet) or 0x82 (protocol
// error) first [MQTT-4.13.1-1], as from mosquitto; a 3.1.1 one is closed
// [MQTT-4.8.0-1]. mochi v2.7.9 closed without a word on what it could not
// decode, and granted filters such as "a+".
//
// An AUTH packet is refused too (ErrAuth): the node supports no MQTT 5
// enhanced authentication, so it never accepts a CONNECT with an
// Authentication Method, and an AUTH after a CONNECT without one is a
// protocol error (MQTT 5 §4.12, §3.15): an MQTT 5 client is sent
// DISCONNECT 0x82 first, as for a SUBSCRIBE that is a protocol error; for
// 3.1.1 the packet type is reserved, and the connection is closed. mochi
// v2.7.9 ignored an AUTH and kept the connection, and closed without a
// word on one with no reason code (remaining length 0, which MQTT 5
// allows).
//
// An idle connection holds no buffer of this package: while no packet is
// partly received, Conn reads straight into the caller's buffer.
package inbound

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Errors a Conn returns from Read instead of a refused packet's bytes.
var (
	ErrNotConnect = errors.New("inbound: first packet is not a CONNECT")
	ErrTooLarge   = errors.New("inbound: packet too large")
	ErrMalformed  = errors.New("inbound: malformed fixed header")
	// ErrSubscription wraps the mqttwire.CheckSubscription error of a
	// SUBSCRIBE or UNSUBSCRIBE refused.
	ErrSubscription = errors.New("inbound: SUBSCRIBE or UNSUBSCRIBE refused")
	// ErrAuth is returned for an AUTH packet: a protocol error
	// (mqttwire.ErrProtocol), as the node takes no CONNECT with an
	// Authentication Method.
	ErrAuth = fmt.Errorf("inbound: AUTH packet without enhanced authentication: %w", mqttwire.ErrProtocol)
)

// authType is the packet type of AUTH (v5; reserved in 3.1.1).
const authType = 15

// connectByte is a CONNECT's first byte: type 1, flags 0 [MQTT-2.2.2-2].
const connectByte = 0x10

// Buffer sizes. After the CONNECT, a packet of up to eager bytes gets a
// buffer for all of it once its header is read (from a pool: that much is
// cheap); the CONNECT and larger packets start at minGrow and double with
// what arrived, never beyond their size.
const (
	minGrow = 512
	eager   = 16 << 10
)

// maxEmptyReads bounds underlying Reads that return neither bytes nor an error.
const maxEmptyReads = 100

// Limits bound the packets a Conn lets through, in whole-packet bytes (fixed
// header included). Zero means the protocol's maximum.
type Limits struct {
	First int // the first packet, the CONNECT
	Max   int // every packet
}

// Conn is a net.Conn whose Read returns whole MQTT packets only. Writes,
// deadlines and addresses are the underlying connection's. A Conn is read by
// one goroutine at a time, as mochi does.
type Conn struct {
	net.Conn
	lim     Limits
	started bool   // the first packet is through
	pend    []byte // pend[off:ready] whole packets to deliver; pend[ready:] the start of the next one
	off     int
	ready   int
	err     error // returned once pend[off:ready] is delivered
	version byte  // the CONNECT's protocol level, once it is through
	told    bool  // the refusal was written (tell)
	wrote   atomic.Bool
}

// v5 DISCONNECT and CONNACK with reason 0x95 (packet too large), and
// DISCONNECT 0x81 (malformed packet) and 0x82 (protocol error).
var (
	disconnectTooLarge  = mqttwire.AppendDisconnect(nil, mqttwire.V5, mqttwire.Code5PacketTooLarge)
	connackTooLarge     = mqttwire.AppendConnack(nil, mqttwire.V5, false, mqttwire.Code5PacketTooLarge)
	disconnectMalformed = mqttwire.AppendDisconnect(nil, mqttwire.V5, mqttwire.Code5MalformedPacket)
	disconnectProtocol  = mqttwire.AppendDisconnect(nil, mqttwire.V5, mqttwire.Code5ProtocolError)
)

// Write writes to the connection. The first write is the CONNACK: the node
// writes nothing to a client before it.
func (c *Conn) Write(p []byte) (int, error) {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	return c.Conn.Write(p)
}

// tell answers a v5 client whose packet is refused, once: a CONNECT too
// large with CONNACK 0x95; a later packet with DISCONNECT (0x95 too large,
// 0x81 or 0x82 a SUBSCRIBE or UNSUBSCRIBE refused, 0x82 an AUTH), only after its
// CONNACK, as nothing may come before it [MQTT-3.2.0-1]. Other clients are
// just closed. (The node's connections close gracefully, listen/linger.go:
// what the client still sends does not turn the close into a reset.)
func (c *Conn) tell() {
	if c.told || c.version != 5 {
		return
	}
	var connack, disconnect []byte
	switch {
	case errors.Is(c.err, ErrTooLarge):
		connack, disconnect = connackTooLarge, disconnectTooLarge
	case errors.Is(c.err, mqttwire.ErrProtocol):
		disconnect = disconnectProtocol
	case errors.Is(c.err, ErrSubscription):
		disconnect = disconnectMalformed
	default:
		return
	}
	c.told = true
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	switch {
	case !c.started:
		c.Conn.Write(connack)
	case c.wrote.Load():
		c.Conn.Write(disconnect)
	}
}

// NewConn wraps c.
func NewConn(c net.Conn, lim Limits) *Conn { return &Conn{Conn: c, lim: lim} }

// NetConn returns the wrapped connection (as crypto/tls.Conn.NetConn does).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read reads whole packets into p; a packet longer than p is returned over
// several calls. It returns an error only once every whole packet received
// before it was returned.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for empty := 0; ; {
		if c.off < c.ready {
			return c.deliver(p), nil
		}
		if c.err != nil {
			c.tell()
			return 0, c.err
		}
		var n int
		if len(c.pend) == 0 {
			if n = c.readDirect(p); n > 0 {
				return n, nil
			}
		} else {
			n = c.fill()
		}
		if n > 0 || c.err != nil {
			empty = 0
		} else if empty++; empty == maxEmptyReads {
			c.err = io.ErrNoProgress
		}
	}
}

// readDirect reads into p while no packet is partly received. It returns the
// whole packets at the start of p; the rest is kept in pend.
func (c *Conn) readDirect(p []byte) int {
	n, err := c.Conn.Read(p)
	whole, serr := c.scan(p[:n])
	if rest := p[whole:n]; len(rest) > 0 && serr == nil {
		c.pend = append(alloc(len(rest)), rest...)
	}
	switch { // a refusal first: it explains the close
	case serr != nil:
		c.err = serr
	case err != nil:
		c.err = err
	}
	return whole
}

// fill reads more of the partly received packet at the start of pend.
func (c *Conn) fill() int {
	size, err := header(c.pend, c.limit())
	if err != nil {
		c.firstTooLarge(c.pend, err)
		c.err = err
		return 0
	}
	c.grow(size)
	n, rerr := c.Conn.Read(c.pend[len(c.pend):cap(c.pend)])
	c.pend = c.pend[:len(c.pend)+n]
	c.ready, err = c.scan(c.pend)
	switch {
	case err != nil:
		c.err = err
	case rerr != nil:
		c.err = rerr
	}
	return n
}

// grow makes room for at least one more byte of the packet of size bytes
// (0: its header is incomplete) at the start of pend, doubling with what
// arrived but never beyond the packet.
func (c *Conn) grow(size int) {
	if len(c.pend) < cap(c.pend) {
		return
	}
	n := max(2*len(c.pend), minGrow)
	switch {
	case c.started && size > 0 && size <= eager: // not before the CONNECT is through
		n = size
	case size > len(c.pend):
		n = min(n, size)
	}
	old := c.pend
	c.pend = append(alloc(n), old...)
	free(old)
}

// deliver copies whole packets to p; once all are delivered, pend keeps only
// the partly received packet that follows them (or nothing, and no buffer).
func (c *Conn) deliver(p []byte) int {
	n := copy(p, c.pend[c.off:c.ready])
	c.off += n
	if c.off < c.ready {
		return n
	}
	rest := len(c.pend) - c.ready
	switch {
	case rest == 0:
		free(c.pend)
		c.pend = nil
	case cap(c.pend) > eager && rest <= eager: // a big packet went: back to a pooled buffer
		old := c.pend
		c.pend = append(alloc(rest), old[c.ready:]...)
		free(old)
	default:
		c.pend = c.pend[:copy(c.pend, c.pend[c.ready:])]
	}
	c.off, c.ready = 0, 0
	return n
}

// Pooled buffers: most partly received packets fit one, and a connection
// gives its buffer back as soon as no packet is partly received, so an idle
// connection holds none.
var (
	small  = sync.Pool{New: func() any { return new([minGrow]byte) }}
	medium = sync.Pool{New: func() any { return new([eager]byte) }}
)

// alloc returns an empty buffer with room for n bytes.
func alloc(n int) []byte {
	switch {
	case n <= minGrow:
		return small.Get().(*[minGrow]byte)[:0]
	case n <= eager:
		return medium.Get().(*[eager]byte)[:0]
	}
	return make([]byte, 0, n)
}

// free gives a buffer from alloc back.
func free(b []byte) {
	switch cap(b) {
	case minGrow:
		small.Put((*[minGrow]byte)(b[:minGrow]))
	case eager:
		medium.Put((*[eager]byte)(b[:eager]))
	}
}

// limit returns the size limit of the next packet.
func (c *Conn) limit() limit {
	if !c.started {
		return limit{first: true, max: c.lim.First}
	}
	return limit{max: c.lim.Max}
}

// scan returns how many leading bytes of b, which starts at a packet
// boundary, are whole packets.
func (c *Conn) scan(b []byte) (whole int, err error) {
	for {
		size, err := header(b[whole:], c.limit())
		c.firstTooLarge(b[whole:], err)
		if err != nil || size == 0 || len(b)-whole < size {
			return whole, err
		}
		pkt := b[whole : whole+size]
		switch {
		case !c.started:
			c.version, _ = mqttwire.PeekVersion(pkt)
		case mqttwire.IsSubscription(pkt[0]):
			if err := mqttwire.CheckSubscription(pkt, c.version); err != nil {
				return whole, fmt.Errorf("%w: %w", ErrSubscription, err)
			}
		case pkt[0]>>4 == authType:
			return whole, ErrAuth
		}
		whole += size
		c.started = true
	}
}

// firstTooLarge notes the level of a CONNECT refused as too large, when b,
// its start, holds it: tell answers a v5 one.
func (c *Conn) firstTooLarge(b []byte, err error) {
	if !c.started && errors.Is(err, ErrTooLarge) {
		c.version, _ = mqttwire.PeekVersion(b)
	}
}

type limit struct {
	first bool // the packet must be a CONNECT
	max   int  // 0: the protocol's maximum
}

// header returns the whole size of the packet whose fixed header starts b, or
// 0 while that header is incomplete, and refuses it as soon as the bytes
// allow.
func header(b []byte, l limit) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if l.first && b[0] != connectByte {
		return 0, fmt.Errorf("%w: first byte 0x%02x", ErrNotConnect, b[0])
	}
	rem, n, err := mqttwire.ParseVarint(b[1:])
	switch {
	case errors.Is(err, mqttwire.ErrShort):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
	}
	size := 1 + n + rem
	if l.max > 0 && size > l.max {
		which := "packet"
		if l.first {
			which = "CONNECT"
		}
		return 0, fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, which, size, l.max)
	}
	return size, nil
}
