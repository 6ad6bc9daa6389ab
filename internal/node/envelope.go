package node

import (
	"encoding/binary"
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"
)

// envelope is one MQTT message as it travels between nodes (the payload of
// a NATS message, the value of a retained key, an entry of a session
// handover). It is a compact binary record rather than NATS headers because
// MQTT strings may hold any UTF-8, including the CR/LF a header cannot.
//
//	byte     version (1)
//	byte     flags: bits 0-1 QoS, 2 retain, 3 expiry set, 4 payload format set, 5 payload format
//	string   origin (the publishing node's instance id)
//	uvarint  seq (per origin, increasing; origin+seq identify the message)
//	string   topic
//	uvarint  message expiry remaining, in seconds (when flag 3)
//	string   content type, string response topic, bytes correlation data
//	uvarint  user property count, then key, value strings
//	uvarint  handled group count, then strings: shared subscriptions already
//	         served on the origin node (local_first), which receivers skip
//	rest     payload
//
// Strings and bytes are a uvarint length and the bytes.
type envelope struct {
	origin  string
	seq     uint64
	topic   string
	qos     byte
	retain  bool
	expiry  uint32 // remaining seconds; 0 with hasExp false = no expiry
	hasExp  bool
	props   packets.Properties // PayloadFormat, ContentType, ResponseTopic, CorrelationData, User
	handled []string
	payload []byte
}

const envelopeVersion = 1

var errEnvelope = errors.New("node: malformed mesh envelope")

// appendEnvelope encodes e after b.
func appendEnvelope(b []byte, e *envelope) []byte {
	flags := e.qos & 3
	if e.retain {
		flags |= 1 << 2
	}
	if e.hasExp {
		flags |= 1 << 3
	}
	if e.props.PayloadFormatFlag {
		flags |= 1 << 4
		if e.props.PayloadFormat != 0 {
			flags |= 1 << 5
		}
	}
	b = append(b, envelopeVersion, flags)
	b = appendString(b, e.origin)
	b = binary.AppendUvarint(b, e.seq)
	b = appendString(b, e.topic)
	if e.hasExp {
		b = binary.AppendUvarint(b, uint64(e.expiry))
	}
	b = appendString(b, e.props.ContentType)
	b = appendString(b, e.props.ResponseTopic)
	b = appendString(b, string(e.props.CorrelationData))
	b = binary.AppendUvarint(b, uint64(len(e.props.User)))
	for _, u := range e.props.User {
		b = appendString(b, u.Key)
		b = appendString(b, u.Val)
	}
	b = binary.AppendUvarint(b, uint64(len(e.handled)))
	for _, h := range e.handled {
		b = appendString(b, h)
	}
	return append(b, e.payload...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeEnvelope parses what appendEnvelope wrote. The payload aliases data.
func decodeEnvelope(data []byte) (*envelope, error) {
	r := reader{b: data}
	version, flags := r.byte(), r.byte()
	if r.err != nil || version != envelopeVersion {
		return nil, errEnvelope
	}
	e := &envelope{qos: flags & 3, retain: flags&(1<<2) != 0, hasExp: flags&(1<<3) != 0}
	if e.qos > 2 {
		return nil, errEnvelope
	}
	if flags&(1<<4) != 0 {
		e.props.PayloadFormatFlag = true
		e.props.PayloadFormat = (flags >> 5) & 1
	}
	e.origin = r.string()
	e.seq = r.uvarint()
	e.topic = r.string()
	if e.hasExp {
		e.expiry = uint32(min(r.uvarint(), 1<<32-1))
	}
	e.props.ContentType = r.string()
	e.props.ResponseTopic = r.string()
	if cd := r.string(); cd != "" {
		e.props.CorrelationData = []byte(cd)
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		e.props.User = append(e.props.User, packets.UserProperty{Key: r.string(), Val: r.string()})
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		e.handled = append(e.handled, r.string())
	}
	if r.err != nil {
		return nil, r.err
	}
	e.payload = r.b
	return e, nil
}

// reader consumes an envelope; the first error sticks and zero values follow.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.err = errEnvelope
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errEnvelope
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a list length, bounded by the bytes left (every item takes at
// least one byte) so a forged count cannot make a loop spin.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errEnvelope
		return 0
	}
	return int(n)
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errEnvelope
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
