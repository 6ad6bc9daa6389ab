package inbound

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// chunks is a net.Conn whose Read returns the input in the given pieces.
type chunks struct {
	net.Conn
	parts [][]byte
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.parts[0])
	if c.parts[0] = c.parts[0][n:]; len(c.parts[0]) == 0 {
		c.parts = c.parts[1:]
	}
	return n, nil
}

// split cuts b into pieces of the sizes sizes gives, cycling (0 counts as 1).
func split(b, sizes []byte) [][]byte {
	if len(sizes) == 0 {
		sizes = []byte{255}
	}
	var parts [][]byte
	for i := 0; len(b) > 0; i++ {
		n := min(len(b), max(1, int(sizes[i%len(sizes)])))
		parts = append(parts, b[:n])
		b = b[n:]
	}
	return parts
}

// readAll reads c to its end with reads of the sizes sizes gives and checks
// that the buffer never outgrows the packet it holds.
func readAll(t *testing.T, c *Conn, sizes []byte, bound int) ([]byte, error) {
	t.Helper()
	var out []byte
	for i := 0; ; i++ {
		p := make([]byte, max(1, int(sizes[i%len(sizes)])*7))
		n, err := c.Read(p)
		out = append(out, p[:n]...)
		if cap(c.pend) > max(eager, bound) {
			t.Fatalf("buffer of %d bytes for packets of at most %d", cap(c.pend), bound)
		}
		if err != nil {
			return out, err
		}
	}
}

// reference is a plain reading of the rules: the length of the whole packets
// that start data, and whether the packet after them is refused.
func reference(data []byte, lim Limits) (whole int, refused bool) {
	var version byte
	for first := true; whole < len(data); first = false {
		b := data[whole:]
		if first && b[0] != 0x10 {
			return whole, true
		}
		rem, i, mul := 0, 1, 1
		for ; ; i++ {
			if i == 5 { // a fourth length byte with its continuation bit
				return whole, true
			}
			if i == len(b) {
				return whole, false
			}
			rem += int(b[i]&0x7f) * mul
			mul *= 128
			if b[i] < 0x80 {
				break
			}
		}
		size, max := i+1+rem, lim.Max
		if first {
			max = lim.First
		}
		if max > 0 && size > max {
			return whole, true
		}
		if size > len(b) {
			return whole, false
		}
		if first {
			version, _ = mqttwire.PeekVersion(b[:size])
		} else if b[0]>>4 == 8 || b[0]>>4 == 10 {
			if mqttwire.CheckSubscription(b[:size], version) != nil {
				return whole, true
			}
		}
		whole += size
	}
	return whole, false
}

func check(t *testing.T, data, sizes []byte, lim Limits) {
	t.Helper()
	if len(sizes) == 0 {
		sizes = []byte{1}
	}
	c := NewConn(&chunks{parts: split(bytes.Clone(data), sizes)}, lim)
	bound := max(lim.First, lim.Max)
	if bound == 0 || bound > 2*len(data) {
		bound = 2 * len(data) // the buffer grows with what arrived
	}
	out, err := readAll(t, c, sizes, bound)
	whole, refused := reference(data, lim)
	if !bytes.Equal(out, data[:whole]) {
		t.Fatalf("delivered %x, want the whole packets %x", out, data[:whole])
	}
	isRefusal := errors.Is(err, ErrNotConnect) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMalformed) ||
		errors.Is(err, ErrSubscription)
	if refused != isRefusal || !refused && err != io.EOF {
		t.Fatalf("error %v, want refused=%v", err, refused)
	}
}

var (
	connect    = []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}
	pingreq    = []byte{0xc0, 0}
	publishBig = append([]byte{0x30, 0x80, 0x08, 0, 1, 't'}, make([]byte, 1024-3)...) // 1,027 bytes
)

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// subscribe is a 3.1.1 SUBSCRIBE to filter at QoS 1 (connect is 3.1.1).
func subscribe(filter string) []byte {
	body := append([]byte{0, 1, 0, byte(len(filter))}, filter...)
	return append([]byte{0x82, byte(len(body) + 1)}, append(body, 1)...)
}

func TestConn(t *testing.T) {
	lim := Limits{First: 64, Max: 2048}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"connect", connect},
		{"pipelined", cat(connect, pingreq, publishBig, pingreq)},
		{"not a connect", cat(pingreq, connect)},
		{"connect too large", []byte{0x10, 0x80, 0x80, 0x10}},
		{"later packet too large", cat(connect, []byte{0x30, 0x80, 0x80, 0x01})},
		{"five-byte length", cat(connect, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f})},
		{"cut in the header", cat(connect, []byte{0x30, 0x80})},
		{"cut in the body", cat(connect, publishBig[:700])},
		{"subscribe", cat(connect, subscribe("a/+"), pingreq)},
		{"subscribe refused", cat(connect, pingreq, subscribe("a/#/b"), pingreq)},
		{"unsubscribe refused", cat(connect, []byte{0xa2, 4, 0, 1, 0, 0})},
		{"empty", nil},
	} {
		for _, sizes := range [][]byte{{1}, {2}, {3, 200}, {255}, {7, 1, 13}} {
			t.Run(tc.name, func(t *testing.T) { check(t, tc.data, sizes, lim) })
		}
	}
}

// TestConnHoldsWhatArrived: a CONNECT that announces 256 MB is refused from
// its header; a packet announced at the limit and trickled is held in a
// buffer that grows with the bytes, not allocated whole.
func TestConnHoldsWhatArrived(t *testing.T) {
	c := NewConn(&chunks{parts: [][]byte{{0x10, 0xff, 0xff, 0xff, 0x7f}}}, Limits{First: 1 << 16, Max: 1 << 20})
	if _, err := c.Read(make([]byte, 2048)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CONNECT announcing 256 MB: %v, want ErrTooLarge", err)
	}
	big := cat(connect, []byte{0x30, 0xfa, 0xff, 0x3f}) // 1 MiB announced, 4 body bytes sent
	c = NewConn(&chunks{parts: split(cat(big, []byte("abcd")), []byte{3})}, Limits{First: 1 << 16, Max: 1 << 20})
	out, err := readAll(t, c, []byte{255}, eager)
	if err != io.EOF || !bytes.Equal(out, connect) {
		t.Fatalf("got %x, %v; want the CONNECT then EOF", out, err)
	}
}

func FuzzConn(f *testing.F) {
	f.Add(cat(connect, pingreq, publishBig), []byte{3, 200}, uint16(64), uint16(2048))
	f.Add(cat(connect, []byte{0x30, 0x80, 0x80, 0x01}), []byte{1}, uint16(64), uint16(100))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01}, []byte{2}, uint16(0), uint16(0))
	f.Add(cat(pingreq, connect), []byte{1}, uint16(64), uint16(64))
	f.Add(cat(connect, subscribe("a/#"), subscribe("a+")), []byte{5}, uint16(64), uint16(64))
	f.Fuzz(func(t *testing.T, data, sizes []byte, first, maxSize uint16) {
		check(t, data, sizes, Limits{First: int(first), Max: int(maxSize)})
	})
}
