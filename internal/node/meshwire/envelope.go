package meshwire

import (
	"encoding/binary"
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Envelope is one MQTT message as it travels between nodes (the payload of
// a NATS message, the value of a retained key, an entry of a session
// handover). It is a compact binary record rather than NATS headers because
// MQTT strings may hold any UTF-8, including the CR/LF a header cannot.
//
//	byte     version (1)
//	byte     flags: bits 0-1 QoS, 2 retain, 3 expiry set, 4 payload format set, 5 payload format
//	string   origin (the publishing node's instance id)
//	uvarint  seq (per origin, increasing; origin and seq are the MsgID)
//	string   topic
//	uvarint  message expiry remaining, in seconds (when flag 3)
//	string   content type, string response topic, bytes correlation data
//	uvarint  user property count, then key, value strings
//	uvarint  handled group count, then strings: shared subscriptions already
//	         served on the origin node (local_first), which receivers skip;
//	         among them, extensions (below)
//	rest     payload
//
// Strings and bytes are a uvarint length and the bytes.
//
// Extensions travel as entries of the handled list that start with U+0000,
// which no MQTT string holds [MQTT-1.5.4-2]: no shared filter equals them,
// so a node that does not know one skips it as a group served elsewhere
// that it has no member of. There is one: U+0000 't' and a uvarint, the
// origin's clock at the publish in unix milliseconds (Sent).
type Envelope struct {
	ID        MsgID // Seq 0 in a retained value; zero in a handover entry (which names the id itself)
	Topic     string
	QoS       byte
	Retain    bool
	Expiry    uint32 // remaining seconds; 0 with HasExpiry false = no expiry
	HasExpiry bool
	Props     packets.Properties // PayloadFormat, ContentType, ResponseTopic, CorrelationData, User (see Props)
	Handled   []string
	Sent      int64 // unix milliseconds on the origin's clock at the publish; 0 = not sent
	Payload   []byte
}

// sentTag starts the handled entry that carries Sent.
const sentTag = "\x00t"

const envelopeVersion = 1

var errEnvelope = errors.New("meshwire: malformed mesh envelope")

// AppendEnvelope encodes e after b.
func AppendEnvelope(b []byte, e *Envelope) []byte {
	flags := e.QoS & 3
	if e.Retain {
		flags |= 1 << 2
	}
	if e.HasExpiry {
		flags |= 1 << 3
	}
	if e.Props.PayloadFormatFlag {
		flags |= 1 << 4
		if e.Props.PayloadFormat != 0 {
			flags |= 1 << 5
		}
	}
	b = append(b, envelopeVersion, flags)
	b = appendString(b, e.ID.Origin)
	b = binary.AppendUvarint(b, e.ID.Seq)
	b = appendString(b, e.Topic)
	if e.HasExpiry {
		b = binary.AppendUvarint(b, uint64(e.Expiry))
	}
	b = appendString(b, e.Props.ContentType)
	b = appendString(b, e.Props.ResponseTopic)
	b = appendString(b, string(e.Props.CorrelationData))
	b = binary.AppendUvarint(b, uint64(len(e.Props.User)))
	for _, u := range e.Props.User {
		b = appendString(b, u.Key)
		b = appendString(b, u.Val)
	}
	n := len(e.Handled)
	if e.Sent > 0 {
		n++
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, h := range e.Handled {
		b = appendString(b, h)
	}
	if e.Sent > 0 {
		var t [len(sentTag) + binary.MaxVarintLen64]byte
		ext := binary.AppendUvarint(append(t[:0], sentTag...), uint64(e.Sent))
		b = binary.AppendUvarint(b, uint64(len(ext)))
		b = append(b, ext...)
	}
	return append(b, e.Payload...)
}

// Props keeps the v5 properties that travel with a message
// [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] (expiry
// travels as a remaining interval, [MQTT-3.3.2-6]); topic aliases and
// subscription identifiers belong to one connection and do not.
func Props(p packets.Properties) packets.Properties {
	return packets.Properties{
		PayloadFormat: p.PayloadFormat, PayloadFormatFlag: p.PayloadFormatFlag,
		ContentType: p.ContentType, ResponseTopic: p.ResponseTopic,
		CorrelationData: p.CorrelationData, User: p.User,
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeEnvelope parses what AppendEnvelope wrote. The payload aliases data.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	e := new(Envelope)
	if err := DecodeEnvelopeInto(e, data); err != nil {
		return nil, err
	}
	return e, nil
}

// DecodeEnvelopeInto is DecodeEnvelope into e (which it overwrites), for a
// caller that keeps e on its stack: the mesh decodes one per message.
func DecodeEnvelopeInto(e *Envelope, data []byte) error {
	r := reader{b: data}
	version, flags := r.byte(), r.byte()
	if r.err != nil || version != envelopeVersion {
		return errEnvelope
	}
	*e = Envelope{QoS: flags & 3, Retain: flags&(1<<2) != 0, HasExpiry: flags&(1<<3) != 0}
	if e.QoS > 2 {
		return errEnvelope
	}
	if flags&(1<<4) != 0 {
		e.Props.PayloadFormatFlag = true
		e.Props.PayloadFormat = (flags >> 5) & 1
	}
	e.ID.Origin = r.string()
	e.ID.Seq = r.uvarint()
	e.Topic = r.string()
	if e.HasExpiry {
		e.Expiry = uint32(min(r.uvarint(), 1<<32-1))
	}
	e.Props.ContentType = r.string()
	e.Props.ResponseTopic = r.string()
	if cd := r.string(); cd != "" {
		e.Props.CorrelationData = []byte(cd)
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		e.Props.User = append(e.Props.User, packets.UserProperty{Key: r.string(), Val: r.string()})
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		h := r.bytes()
		switch {
		case len(h) == 0 || h[0] != 0:
			e.Handled = append(e.Handled, string(h))
		case string(h[:min(len(h), len(sentTag))]) == sentTag:
			if v, k := binary.Uvarint(h[len(sentTag):]); k > 0 && v > 0 && v <= 1<<62 {
				e.Sent = int64(v)
			}
		}
		// other extensions: from a later version, skipped
	}
	if r.err != nil {
		return r.err
	}
	e.Payload = r.b
	return nil
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

func (r *reader) string() string { return string(r.bytes()) }

// bytes reads a string without copying it.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errEnvelope
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}
