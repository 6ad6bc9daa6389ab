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
// ErrTooLarge as soon as the length header is complete and announces more
// than maxSize bytes (maxSize <= 0: no limit but the protocol's). Errors from
// r are returned as they are, except that io.EOF after some bytes becomes
// io.ErrUnexpectedEOF.
func ReadConnect(r io.Reader, buf []byte, maxSize int) (c Connect, data []byte, err error) {
	data = buf[:0]
	size, empty := 0, 0
	var rerr error
	for {
		if size == 0 {
			if size, err = connectSize(data, maxSize); err != nil {
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
