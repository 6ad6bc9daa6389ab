package mqttwire

import "fmt"

// Property identifiers a CONNECT may carry (v5 §2.2.2.2, §3.1.2.11, §3.1.3.2).
const (
	propPayloadFormat       byte = 0x01
	propMessageExpiry       byte = 0x02
	propContentType         byte = 0x03
	propResponseTopic       byte = 0x08
	propCorrelationData     byte = 0x09
	propSessionExpiry       byte = 0x11
	propAuthMethod          byte = 0x15
	propAuthData            byte = 0x16
	propRequestProblemInfo  byte = 0x17
	propWillDelay           byte = 0x18
	propRequestResponseInfo byte = 0x19
	propReceiveMaximum      byte = 0x21
	propTopicAliasMaximum   byte = 0x22
	propUser                byte = 0x26
	propMaximumPacketSize   byte = 0x27
)

// propKind is the data type of a property's value (v5 §2.2.2.2).
type propKind uint8

const (
	kindNone   propKind = iota // not allowed in this property list
	kindByte                   // Byte
	kindU16                    // Two Byte Integer
	kindU32                    // Four Byte Integer
	kindString                 // UTF-8 Encoded String
	kindBinary                 // Binary Data
	kindPair                   // UTF-8 String Pair
)

// propertySet maps the identifiers allowed in one property list to their
// kinds. Identifiers are Variable Byte Integers, but every one defined fits
// in a byte below 0x40; anything else is not allowed.
type propertySet [64]propKind

// connectProperties: v5 §3.1.2.11.
var connectProperties = propertySet{
	propSessionExpiry:       kindU32,
	propReceiveMaximum:      kindU16,
	propMaximumPacketSize:   kindU32,
	propTopicAliasMaximum:   kindU16,
	propRequestResponseInfo: kindByte,
	propRequestProblemInfo:  kindByte,
	propUser:                kindPair,
	propAuthMethod:          kindString,
	propAuthData:            kindBinary,
}

// willProperties: v5 §3.1.3.2.
var willProperties = propertySet{
	propWillDelay:       kindU32,
	propPayloadFormat:   kindByte,
	propMessageExpiry:   kindU32,
	propContentType:     kindString,
	propResponseTopic:   kindString,
	propCorrelationData: kindBinary,
	propUser:            kindPair,
}

// propertyList reads a property list's length and returns a cursor over
// the list, which must lie within r; r moves past it.
func propertyList(r *cursor, field string) (cursor, error) {
	n, err := r.varint(field)
	if err != nil {
		return cursor{}, err
	}
	if n > r.left() {
		return cursor{}, malformed(field, errPastEnd)
	}
	p := cursor{b: r.b[r.off : r.off+n]}
	r.off += n
	return p, nil
}

// decodeProperties reads a property list: its length, then properties that
// must lie within it. Each property but User Property may appear once (v5
// §3.1.2.11.2–.10, §3.1.3.2.2–.7: "It is a Protocol Error to include ... more
// than once"). c receives the session expiry when not nil. odd is the first
// string property holding a code point AllowedString refuses (a *charError,
// RefuseMalformed): brokers such as mosquitto close on those in any string,
// and the caller refuses the CONNECT for it once the packet is known to be
// well formed.
func decodeProperties(r *cursor, field string, set *propertySet, c *Connect) (odd, err error) {
	p, err := propertyList(r, field)
	if err != nil {
		return nil, err
	}
	var seen uint64
	for p.left() > 0 {
		id, _ := p.u8()
		if id >= byte(len(set)) || set[id] == kindNone {
			return nil, propError(field, id, errUnknownProperty)
		}
		if id != propUser && seen&(1<<id) != 0 {
			return nil, propError(field, id, errDuplicate)
		}
		seen |= 1 << id
		allowed, err := decodeProperty(&p, id, set[id], c)
		if err != nil {
			return nil, propError(field, id, err)
		}
		if !allowed && odd == nil {
			odd = &charError{field: fmt.Sprintf("%s: property 0x%02x", field, id), why: RefuseMalformed}
		}
	}
	if seen&(1<<propAuthData) != 0 && seen&(1<<propAuthMethod) == 0 { // v5 §3.1.2.11.10
		return nil, propError(field, propAuthData, errAuthNoMethod)
	}
	return odd, nil
}

// decodeProperty reads one property's value and checks it; allowed is
// false when a string in it holds a code point AllowedString refuses.
func decodeProperty(p *cursor, id byte, kind propKind, c *Connect) (allowed bool, err error) {
	num, s, allowed, err := propertyValue(p, kind)
	if err != nil {
		return false, err
	}
	switch id {
	case propReceiveMaximum, propMaximumPacketSize: // v5 §3.1.2.11.3, §3.1.2.11.4
		if num == 0 {
			return false, errBadValue
		}
	case propRequestResponseInfo, propRequestProblemInfo, propPayloadFormat: // v5 §3.1.2.11.6, §3.1.2.11.7, §3.1.3.2.3
		if num > 1 {
			return false, errBadValue
		}
	case propResponseTopic: // a Topic Name [MQTT-3.3.2-14] (v5)
		return allowed, checkTopicName(s)
	case propSessionExpiry:
		if c != nil {
			c.SessionExpiry = num
		}
	}
	return allowed, nil
}

// propertyValue reads a value of the given kind: numbers in num, strings and
// binary data in s (the value of a pair). allowed is false when a string
// holds a code point AllowedString refuses.
func propertyValue(p *cursor, kind propKind) (num uint32, s []byte, allowed bool, err error) {
	ok, allowed := true, true
	switch kind {
	case kindByte:
		var v byte
		v, ok = p.u8()
		num = uint32(v)
	case kindU16:
		var v uint16
		v, ok = p.u16()
		num = uint32(v)
	case kindU32:
		num, ok = p.u32()
	case kindBinary:
		s, ok = p.binary()
	case kindString:
		err = stringValue(p, &s, &allowed)
	case kindPair: // [MQTT-1.5.7-1]
		if err = stringValue(p, &s, &allowed); err == nil {
			err = stringValue(p, &s, &allowed)
		}
	}
	if !ok {
		err = errPastEnd
	}
	return num, s, allowed, err
}

// stringValue reads a UTF-8 Encoded String into *s; *allowed becomes false
// when it holds a code point AllowedString refuses.
func stringValue(p *cursor, s *[]byte, allowed *bool) error {
	v, ok := p.binary()
	switch {
	case !ok:
		return errPastEnd
	case !validUTF8(v):
		return errBadUTF8
	}
	*s = v
	*allowed = *allowed && allowedChars(v)
	return nil
}

func propError(field string, id byte, problem error) error {
	return malformed(fmt.Sprintf("%s: property 0x%02x", field, id), problem)
}
