package mqttwire

import (
	"errors"
	"fmt"
	"io"
)

const (
	// minConnectSize is the smallest valid CONNECT: a two-byte fixed header,
	// "MQTT", level, flags, keep alive and an empty client identifier. While
	// the fixed header is incomplete ReadConnect reads at most this much, so
	// a valid CONNECT is never over-read into a buffer of its own.
	minConnectSize = 14
	// minGrow is the smallest step once the size is known; beyond it the
	// buffer doubles with what arrived, so a client that announces a large
	// packet and stalls holds little memory.
	minGrow = 512
	// maxEmptyReads bounds Reads that return neither bytes nor an error.
	maxEmptyReads = 100
)

// ReadConnect reads from r until one whole CONNECT is buffered and decodes it.
//
// buf is scratch space owned by the caller (for example from a sync.Pool);
// its contents are replaced. Bytes are read into its spare capacity, and it
// is grown only when full: never beyond the packet's size, plus what one Read
// returned into capacity the caller gave. data holds every byte read, on
// error too; it may extend past the CONNECT when the client pipelined
// packets, and the caller forwards all of it.
//
// It fails as early as the bytes allow, without reading further: ErrNotConnect
// after the first byte, ErrMalformed once the length header has a fifth byte,
// ErrTooLarge once the length header is complete and announces more than
// maxSize bytes (maxSize <= 0: no limit but the protocol's) and the protocol
// level is known, at most minConnectSize bytes in: c.Version is then set
// (0 when the protocol name is not MQTT's), so that a v5 client can be told
// 0x95. Errors from r are returned as they are, except that io.EOF after
// some bytes becomes io.ErrUnexpectedEOF.
func ReadConnect(r io.Reader, buf []byte, maxSize int) (c Connect, data []byte, err error) {
	data = buf[:0]
	size, empty := 0, 0
	var rerr error
	for {
		if size == 0 {
			if size, err = connectSize(data, maxSize); errors.Is(err, ErrTooLarge) {
				c.Version, data = readVersion(r, data)
				return c, data, err
			} else if err != nil {
				return Connect{}, data, err
			}
		}
		if size > 0 && len(data) >= size {
			c, _, err = ParseConnect(data[:size])
			return c, data, err
		}
		if rerr != nil {
			return Connect{}, data, readError(rerr, len(data))
		}
		data = grow(data, size)
		var n int
		n, rerr = r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if n > 0 || rerr != nil {
			empty = 0
		} else if empty++; empty == maxEmptyReads {
			rerr = io.ErrNoProgress
		}
	}
}

// readVersion reads on until data holds the protocol level of the CONNECT
// it starts (at most minConnectSize bytes in all), and returns that level:
// 0 when the name is not "MQTT" or "MQIsdp", or the bytes end first.
func readVersion(r io.Reader, data []byte) (byte, []byte) {
	for empty := 0; ; {
		v, done := PeekVersion(data)
		if done || len(data) >= minConnectSize || empty == maxEmptyReads {
			return v, data
		}
		data = grow(data, minConnectSize)
		n, err := r.Read(data[len(data):min(cap(data), minConnectSize)])
		data = data[:len(data)+n]
		if err != nil {
			v, _ = PeekVersion(data)
			return v, data
		}
		if n == 0 {
			empty++
		}
	}
}

// PeekVersion returns the protocol level of the CONNECT that starts data,
// from its fixed header and protocol name alone: done is false while more
// bytes could tell it, and version is 0 when the name is not MQTT's
// ("MQTT" with any level, "MQIsdp"). The level is not checked.
func PeekVersion(data []byte) (version byte, done bool) {
	_, hdr, err := connectHeader(data)
	if errors.Is(err, ErrShort) {
		return 0, false
	}
	if err != nil {
		return 0, true
	}
	r := cursor{b: data[hdr:]}
	n, ok := r.u16()
	switch {
	case !ok:
		return 0, false
	case n != 4 && n != 6:
		return 0, true
	case r.left() < int(n):
		return 0, false
	}
	if name := string(r.b[r.off : r.off+int(n)]); name != "MQTT" && name != "MQIsdp" {
		return 0, true
	}
	if r.left() == int(n) {
		return 0, false
	}
	return r.b[r.off+int(n)], true
}

// connectSize returns the size of the packet that starts data, or 0 while
// the fixed header is incomplete.
func connectSize(data []byte, maxSize int) (int, error) {
	size, err := ParseConnectHeader(data)
	switch {
	case errors.Is(err, ErrShort):
		return 0, nil
	case err != nil:
		return 0, err
	case maxSize > 0 && size > maxSize:
		return 0, fmt.Errorf("%w: CONNECT of %d bytes, limit %d", ErrTooLarge, size, maxSize)
	}
	return size, nil
}

// grow returns data with spare capacity, reallocating only when it has none.
// size is the packet's size, 0 while unknown.
func grow(data []byte, size int) []byte {
	if len(data) < cap(data) {
		return data
	}
	want := minConnectSize // the header is incomplete: at most 4 bytes so far
	if size > 0 {
		want = min(max(2*len(data), minGrow), size)
	}
	grown := make([]byte, len(data), want)
	copy(grown, data)
	return grown
}

// readError reports a Read error; EOF inside a packet is unexpected.
func readError(err error, have int) error {
	if err == io.EOF && have > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}
