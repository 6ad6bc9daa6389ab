package mqttwire

import (
	"errors"
	"fmt"
	"io"
)

// maxConnackSize caps the CONNACK ReadConnack reads: v5 servers may add a
// reason string and user properties, but nothing needs more than this.
const maxConnackSize = 64 << 10

// AppendConnack appends a CONNACK with the given return code (v3.x) or reason
// code (v5). A v5 CONNACK carries an empty property list.
func AppendConnack(dst []byte, version byte, sessionPresent bool, code byte) []byte {
	var flags byte
	if sessionPresent {
		flags = 1
	}
	if version == V5 {
		return append(dst, connackByte, 3, flags, code, 0)
	}
	return append(dst, connackByte, 2, flags, code)
}

// ParseConnack decodes the CONNACK at the start of b, sent in reply to a
// CONNECT of the given version; n is its size. ErrShort if b ends first.
// Properties of a v5 CONNACK are stepped over, not decoded. For v3.1 the
// acknowledge flags byte is reserved and sessionPresent is always false.
func ParseConnack(b []byte, version byte) (sessionPresent bool, code byte, n int, err error) {
	if len(b) > 0 && b[0] != connackByte {
		return false, 0, 0, notConnack(b[0])
	}
	rem, hdr, err := ParseVarint(b[min(1, len(b)):])
	if err != nil {
		return false, 0, 0, err
	}
	if len(b) < 1+hdr+rem {
		return false, 0, 0, ErrShort
	}
	n = 1 + hdr + rem
	sessionPresent, code, err = connackBody(b[1+hdr:n], version)
	return sessionPresent, code, n, err
}

// connackBody checks the acknowledge flags, code and v5 property length.
func connackBody(body []byte, version byte) (sessionPresent bool, code byte, err error) {
	if len(body) < 2 || version != V5 && len(body) != 2 {
		return false, 0, malformed("connack", errConnackLength)
	}
	flags, code := body[0], body[1]
	if version == V31 { // 3.1: the byte is reserved, with no session present bit
		return false, code, nil
	}
	if flags&^1 != 0 { // v3.1.1 §3.2.2.1, [MQTT-3.2.2-1] v5
		return false, 0, malformed("connack flags", errReservedAck)
	}
	sessionPresent = flags == 1
	if sessionPresent && code != 0 { // [MQTT-3.2.2-4] v3.1.1, [MQTT-3.2.2-6] v5
		return false, 0, malformed("connack flags", errPresentRefused)
	}
	if version == V5 {
		pl, m, err := ParseVarint(body[2:])
		if err != nil || 2+m+pl != len(body) {
			return false, 0, malformed("connack properties", errConnackLength)
		}
	}
	return sessionPresent, code, nil
}

func notConnack(first byte) error {
	return fmt.Errorf("%w: first byte 0x%02x", malformed("fixed header", errNotConnack), first)
}

// Reply is a server's first bytes after a CONNECT, as ReadConnack read them.
type Reply struct {
	Data           []byte // every byte read: the CONNACK and whatever arrived with it
	Size           int    // the CONNACK's size at the start of Data; 0 when the server answered AUTH
	SessionPresent bool
	Code           byte
}

// ReadConnack reads a server's answer to a CONNECT of the given version,
// appending to buf[:0] (grown as needed, up to 64 KiB): whatever each read
// returns, until a whole CONNACK is in. Bytes past the CONNACK
// (Data[Size:]) belong to the stream that follows; a caller that hands the
// connection on passes them along. An MQTT 5 server may answer with AUTH
// (enhanced authentication, §4.12): that is not an error, Size is 0 and
// Data holds what was read. Any other first packet is malformed.
func ReadConnack(r io.Reader, version byte, buf []byte) (Reply, error) {
	data := buf[:0]
	if cap(data) < 8 {
		data = make([]byte, 0, 64)
	}
	for {
		if len(data) > 0 && data[0] == authByte && version == V5 {
			return Reply{Data: data}, nil
		}
		sp, code, n, err := ParseConnack(data, version)
		if err == nil {
			return Reply{Data: data, Size: n, SessionPresent: sp, Code: code}, nil
		}
		if !errors.Is(err, ErrShort) {
			return Reply{}, err
		}
		if rem, hdr, err := ParseVarint(data[min(1, len(data)):]); err == nil && 1+hdr+rem > maxConnackSize {
			return Reply{}, fmt.Errorf("%w: CONNACK of %d bytes", ErrTooLarge, 1+hdr+rem)
		}
		if len(data) == cap(data) {
			data = append(data, make([]byte, len(data))...)[:len(data)]
		}
		m, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+m]
		if err != nil && m == 0 {
			return Reply{}, readError(err, len(data))
		}
	}
}
