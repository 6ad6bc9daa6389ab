package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// Packet types (v3.1.1 §2.2.1, v5 §2.1.2), as the high nibble of byte 0.
const (
	typeConnack    = 2
	typePublish    = 3
	typePuback     = 4
	typePubrec     = 5
	typePubrel     = 6
	typePubcomp    = 7
	typeSuback     = 9
	typePingresp   = 13
	typeDisconnect = 14
)

// maxPacket bounds what the light client reads: the largest payload the
// bench sends plus headers.
const maxPacket = 256<<20 + 64<<10

var errMalformed = errors.New("malformed packet")

// readPacket reads one packet into buf (grown as needed) and returns its
// first byte and body.
func readPacket(r *bufio.Reader, buf []byte) (first byte, body, grown []byte, err error) {
	if first, err = r.ReadByte(); err != nil {
		return 0, nil, buf, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, buf, noEOF(err)
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		if mult *= 128; i == 3 {
			return 0, nil, buf, fmt.Errorf("%w: length over four bytes", errMalformed)
		}
	}
	if n > maxPacket {
		return 0, nil, buf, fmt.Errorf("%w: %d bytes", errMalformed, n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	body = buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, buf, noEOF(err)
	}
	return first, body, buf, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendPublish appends a PUBLISH (v3.1.1 §3.3, v5 §3.3; v5 with an empty
// property list).
func appendPublish(dst []byte, version, qos byte, id uint16, topic string, payload []byte) []byte {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	if version == mqttwire.V5 {
		n++
	}
	dst = append(dst, typePublish<<4|qos<<1)
	dst = mqttwire.AppendVarint(dst, n)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(topic)))
	dst = append(dst, topic...)
	if qos > 0 {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	if version == mqttwire.V5 {
		dst = append(dst, 0)
	}
	return append(dst, payload...)
}

// appendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP with success: in v5
// the reason code and properties are left out (v5 §3.4.2.1).
func appendAck(dst []byte, typ byte, id uint16) []byte {
	first := typ << 4
	if typ == typePubrel {
		first |= 0x02 // [MQTT-3.6.1-1]
	}
	return binary.BigEndian.AppendUint16(append(dst, first, 2), id)
}

// appendSubscribe appends a SUBSCRIBE to one filter (v3.1.1 §3.8, v5 §3.8).
func appendSubscribe(dst []byte, version byte, id uint16, filter string, qos byte) []byte {
	n := 2 + 2 + len(filter) + 1
	if version == mqttwire.V5 {
		n++
	}
	dst = append(dst, 0x82) // [MQTT-3.8.1-1]
	dst = mqttwire.AppendVarint(dst, n)
	dst = binary.BigEndian.AppendUint16(dst, id)
	if version == mqttwire.V5 {
		dst = append(dst, 0)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(filter)))
	dst = append(dst, filter...)
	return append(dst, qos)
}

// publish is a received PUBLISH.
type publish struct {
	qos     byte
	id      uint16
	payload []byte // aliases the read buffer
}

// parsePublish decodes a PUBLISH body; flags is the low nibble of byte 0.
func parsePublish(flags byte, body []byte, version byte) (publish, error) {
	p := publish{qos: flags >> 1 & 3}
	if p.qos == 3 || len(body) < 2 {
		return p, fmt.Errorf("%w: PUBLISH", errMalformed)
	}
	off := 2 + int(binary.BigEndian.Uint16(body))
	if p.qos > 0 {
		if off+2 > len(body) {
			return p, fmt.Errorf("%w: PUBLISH", errMalformed)
		}
		p.id = binary.BigEndian.Uint16(body[off:])
		off += 2
	}
	if version == mqttwire.V5 {
		if off > len(body) {
			return p, fmt.Errorf("%w: PUBLISH", errMalformed)
		}
		n, m, err := mqttwire.ParseVarint(body[off:])
		if err != nil {
			return p, fmt.Errorf("%w: PUBLISH properties", errMalformed)
		}
		off += m + n
	}
	if off > len(body) {
		return p, fmt.Errorf("%w: PUBLISH", errMalformed)
	}
	p.payload = body[off:]
	return p, nil
}

// parseAck decodes the packet id and reason code (0 when left out) of a
// PUBACK, PUBREC, PUBREL or PUBCOMP.
func parseAck(body []byte) (id uint16, code byte, err error) {
	if len(body) < 2 {
		return 0, 0, fmt.Errorf("%w: acknowledgement of %d bytes", errMalformed, len(body))
	}
	if len(body) > 2 {
		code = body[2]
	}
	return binary.BigEndian.Uint16(body), code, nil
}

// parseSuback returns the first return code of a SUBACK for packet id.
func parseSuback(body []byte, version byte) (id uint16, code byte, err error) {
	if len(body) < 3 {
		return 0, 0, fmt.Errorf("%w: SUBACK", errMalformed)
	}
	id, off := binary.BigEndian.Uint16(body), 2
	if version == mqttwire.V5 {
		n, m, err := mqttwire.ParseVarint(body[off:])
		if err != nil || off+m+n >= len(body) {
			return 0, 0, fmt.Errorf("%w: SUBACK properties", errMalformed)
		}
		off += m + n
	}
	return id, body[off], nil
}

// connackLimits are the CONNACK properties the light client obeys.
type connackLimits struct {
	receiveMax      int // the server's Receive Maximum (65535 when absent)
	serverKeepAlive int // seconds; -1 when absent
}

// connackProps reads the v5 CONNACK properties after the flags and code
// (v5 §3.2.2.3), skipping those the client does not use.
func connackProps(props []byte) (connackLimits, error) {
	l := connackLimits{receiveMax: 65535, serverKeepAlive: -1}
	for off := 0; off < len(props); {
		id := props[off]
		size, err := propSize(id, props[off+1:])
		if err != nil {
			return l, err
		}
		v := props[off+1 : off+1+size]
		switch id {
		case 0x21: // Receive Maximum
			l.receiveMax = int(binary.BigEndian.Uint16(v))
		case 0x13: // Server Keep Alive
			l.serverKeepAlive = int(binary.BigEndian.Uint16(v))
		}
		off += 1 + size
	}
	if l.receiveMax == 0 {
		return l, fmt.Errorf("%w: CONNACK Receive Maximum 0", errMalformed)
	}
	return l, nil
}

// propSize is the size of the value of property id at the start of b.
func propSize(id byte, b []byte) (int, error) {
	size := -1
	switch id {
	case 0x24, 0x25, 0x28, 0x29, 0x2a: // Byte
		size = 1
	case 0x13, 0x21, 0x22: // Two Byte Integer
		size = 2
	case 0x11, 0x27: // Four Byte Integer
		size = 4
	case 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f: // UTF-8 string or binary data
		if len(b) >= 2 {
			size = 2 + int(binary.BigEndian.Uint16(b))
		}
	case 0x26: // UTF-8 string pair
		if len(b) >= 2 {
			k := 2 + int(binary.BigEndian.Uint16(b))
			if len(b) >= k+2 {
				size = k + 2 + int(binary.BigEndian.Uint16(b[k:]))
			}
		}
	}
	if size < 0 || size > len(b) {
		return 0, fmt.Errorf("%w: CONNACK property 0x%02x", errMalformed, id)
	}
	return size, nil
}
