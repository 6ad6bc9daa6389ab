package mqttwire

import (
	"fmt"
	"io"
)

// maxConnackSize caps the CONNACK ReadConnack accepts: v5 servers may add a
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

// ReadConnack reads exactly one CONNACK from r, never a byte past it (the
// header byte by byte, then the body), and decodes it as ParseConnack does.
func ReadConnack(r io.Reader, version byte) (sessionPresent bool, code byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return false, 0, err
	}
	if hdr[0] != connackByte {
		return false, 0, notConnack(hdr[0])
	}
	n := 2
	for hdr[n-1]&0x80 != 0 {
		if n == len(hdr) {
			return false, 0, errVarint
		}
		if _, err := io.ReadFull(r, hdr[n:n+1]); err != nil {
			return false, 0, readError(err, n)
		}
		n++
	}
	rem, _, err := ParseVarint(hdr[1:n])
	if err != nil {
		return false, 0, err
	}
	if n+rem > maxConnackSize {
		return false, 0, fmt.Errorf("%w: CONNACK of %d bytes", ErrTooLarge, n+rem)
	}
	pkt := make([]byte, n+rem)
	copy(pkt, hdr[:n])
	if _, err := io.ReadFull(r, pkt[n:]); err != nil {
		return false, 0, readError(err, n)
	}
	sessionPresent, code, _, err = ParseConnack(pkt, version)
	return sessionPresent, code, err
}
