package mqttwire

import (
	"errors"
	"fmt"

	"github.com/mqlb/mqlb/internal/topic"
)

// Checking a client's SUBSCRIBE and UNSUBSCRIBE before the broker reads
// them (the node's inbound guard): what makes one malformed or a protocol
// error, which a server answers by closing the connection, in v5 after a
// DISCONNECT with reason 0x81 or 0x82 [MQTT-4.13.1-1] (v5 §4.13.1), in
// 3.1.1 without an answer [MQTT-4.8.0-1]. mochi-mqtt v2.7.9 closed without
// a DISCONNECT on what it could not decode, and granted filters such as
// "a+" or "$share//t"; mosquitto 2.0 disconnects with 0x81 (0x82 for No
// Local on a shared subscription), EMQX 5 with 0x8F.

// ErrProtocol: the packet parses, but breaks a rule the spec calls a
// Protocol Error (v5 DISCONNECT 0x82). Other refusals of CheckSubscription
// are ErrMalformed (0x81).
var ErrProtocol = errors.New("mqttwire: protocol error")

// Problems CheckSubscription reports.
var (
	errFlags           = errors.New("fixed header flags are not 0010") // [MQTT-3.8.1-1] [MQTT-3.10.1-1]
	errOptionsReserved = errors.New("reserved bits set")               // [MQTT-3.8.3-5] (v5), [MQTT-3-8.3-4] (v3.1.1)
	errQoS3            = errors.New("QoS 3")
	errRetainHandling3 = errors.New("retain handling 3")
	errSharedNoLocal   = errors.New("no local on a shared subscription") // [MQTT-3.8.3-4] (v5)
	errSubscriptionID0 = errors.New("subscription identifier 0")
)

// protocolError is a fieldError for a Protocol Error: it matches
// ErrProtocol and its problem.
type protocolError struct {
	field string
	err   error
}

func (e *protocolError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrProtocol, e.field, e.err)
}

func (e *protocolError) Unwrap() []error { return []error{ErrProtocol, e.err} }

// Packet types CheckSubscription reads (the first byte's high nibble).
const (
	typeSubscribe   = 8
	typeUnsubscribe = 10
)

// IsSubscription reports whether first, a packet's first byte, is that of
// a SUBSCRIBE or UNSUBSCRIBE (whatever its flags).
func IsSubscription(first byte) bool {
	return first>>4 == typeSubscribe || first>>4 == typeUnsubscribe
}

// CheckSubscription checks pkt, one whole SUBSCRIBE or UNSUBSCRIBE (fixed
// header included) from a client of protocol level version: the fixed
// header's flags, the packet identifier's presence, v5 properties (only
// Subscription Identifier, once and not 0, and User Property), and each
// topic filter: a UTF-8 string that is a valid filter [MQTT-4.7.1-2]
// [MQTT-4.7.1-3] [MQTT-4.7.3-1] (v3.1.1 numbering), a shared one with a
// share name and a filter [MQTT-4.8.2-1] [MQTT-4.8.2-2] (v5), and for
// SUBSCRIBE its options byte (v5 §3.8.3.1; v3.1.1 QoS 0–2 and nothing
// else [MQTT-3-8.3-4]). The rest (a packet identifier of 0, a packet
// without filters) the broker answers itself.
func CheckSubscription(pkt []byte, version byte) error {
	name := "SUBSCRIBE"
	if pkt[0]>>4 == typeUnsubscribe {
		name = "UNSUBSCRIBE"
	}
	if pkt[0]&0x0f != 0x02 {
		return malformed(name, errFlags)
	}
	_, n, err := ParseVarint(pkt[1:])
	if err != nil {
		return malformed(name, errPastEnd)
	}
	r := cursor{b: pkt[1+n:]}
	if _, ok := r.u16(); !ok {
		return malformed(name+" packet identifier", errPastEnd)
	}
	if version == V5 {
		if err := checkSubscriptionProperties(&r, name); err != nil {
			return err
		}
	}
	for i := 1; r.left() > 0; i++ {
		field := fmt.Sprintf("%s topic filter %d", name, i)
		f, err := r.str(field)
		if err != nil {
			return err
		}
		if err := topic.ValidSubscription(string(f)); err != nil {
			return malformed(fmt.Sprintf("%s %q", field, clip(f)), err)
		}
		if name == "UNSUBSCRIBE" {
			continue
		}
		opts, ok := r.u8()
		if !ok {
			return malformed(field+" options", errPastEnd)
		}
		if err := checkOptions(opts, version, topic.ShareName(string(f))); err != nil {
			return err
		}
	}
	return nil
}

// checkOptions checks a SUBSCRIBE's subscription options byte.
func checkOptions(opts, version byte, shared bool) error {
	const field = "subscription options"
	switch {
	case version != V5 && opts > 2:
		return malformed(field, errOptionsReserved)
	case version != V5:
		return nil
	case opts&0xc0 != 0:
		return malformed(field, errOptionsReserved)
	case opts&0x03 == 3: // "It is a Protocol Error if the Maximum QoS field has the value 3"
		return &protocolError{field, errQoS3}
	case opts&0x30 == 0x30: // "It is a Protocol Error to send a Retain Handling value of 3"
		return &protocolError{field, errRetainHandling3}
	case opts&0x04 != 0 && shared:
		return &protocolError{field, errSharedNoLocal}
	}
	return nil
}

// Property identifiers of SUBSCRIBE and UNSUBSCRIBE (v5 §3.8.2.1, §3.10.2.1).
const propSubscriptionID byte = 0x0b

// checkSubscriptionProperties reads the property list: a Subscription
// Identifier (SUBSCRIBE only) at most once and not 0, User Properties.
// Anything else makes the packet malformed (v5 §2.2.2.2).
func checkSubscriptionProperties(r *cursor, name string) error {
	field := name + " properties"
	p, err := propertyList(r, field)
	if err != nil {
		return err
	}
	seenID := false
	for p.left() > 0 {
		id, _ := p.u8()
		switch {
		case id == propUser:
			if _, _, _, err := propertyValue(&p, kindPair); err != nil {
				return propError(field, id, err)
			}
		case id == propSubscriptionID && name == "SUBSCRIBE":
			v, err := p.varint(field)
			switch {
			case err != nil:
				return err
			case seenID: // "It is a Protocol Error to include the Subscription Identifier more than once"
				return &protocolError{field, errDuplicate}
			case v == 0: // "It is a Protocol Error if the Subscription Identifier has a value of 0"
				return &protocolError{field, errSubscriptionID0}
			}
			seenID = true
		default:
			return propError(field, id, errUnknownProperty)
		}
	}
	return nil
}

// clip shortens a filter quoted in an error.
func clip(f []byte) string {
	if len(f) > 64 {
		return string(f[:64]) + "…"
	}
	return string(f)
}
