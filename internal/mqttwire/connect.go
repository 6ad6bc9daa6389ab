package mqttwire

import (
	"bytes"
	"cmp"
	"fmt"
	"strings"
)

// Protocol levels (v3.1.1 §3.1.2.2, v5 §3.1.2.2).
const (
	V31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 byte = 4 // MQTT 3.1.1, protocol name "MQTT"
	V5   byte = 5 // MQTT 5.0, protocol name "MQTT"
)

// Connect flags (v3.1.1 §3.1.2.3, v5 §3.1.2.3).
const (
	flagReserved   byte = 0x01
	flagCleanStart byte = 0x02
	flagWill       byte = 0x04
	flagWillQoS    byte = 0x18
	flagWillRetain byte = 0x20
	flagPassword   byte = 0x40
	flagUsername   byte = 0x80
)

// Connect is what a CONNECT carries that mqlb cares about.
type Connect struct {
	Version     byte // V31, V311 or V5
	CleanStart  bool // clean session (v3.x) / clean start (v5)
	KeepAlive   uint16
	ClientID    string
	Username    string
	HasUsername bool
	HasPassword bool
	// Password is written by AppendConnect; ParseConnect never fills it, so
	// that the load balancer does not hold passwords.
	Password   []byte
	WillFlag   bool
	WillQoS    byte
	WillRetain bool
	// WillTopic and WillPayload are written by AppendConnect when WillFlag is
	// set. ParseConnect validates them but leaves them empty.
	WillTopic     string
	WillPayload   []byte
	SessionExpiry uint32 // v5 property 0x11; 0 when absent
	Size          int    // bytes of the whole packet, fixed header included
}

// ParseConnect decodes the CONNECT at the start of b and returns it with n,
// the packet's size; bytes after it (pipelined packets) are left alone. It
// returns ErrShort, n == 0, while b holds less than the whole packet; checks
// on the fixed header (ErrNotConnect, a length of more than four bytes) come
// first. On other errors n is the packet's size and c holds only Size and,
// once a known protocol name and its level were read, Version (the level
// sent, for ErrUnsupportedVersion).
func ParseConnect(b []byte) (c Connect, n int, err error) {
	return parseConnect(b, false)
}

// parseConnect is ParseConnect; keepWill also copies the will topic and
// payload out (tests re-encode what they parsed).
func parseConnect(b []byte, keepWill bool) (Connect, int, error) {
	size, hdr, err := connectHeader(b)
	if err != nil {
		return Connect{}, 0, err
	}
	if len(b) < size {
		return Connect{}, 0, ErrShort
	}
	c := Connect{Size: size}
	if err := c.decodeBody(b[hdr:size], keepWill); err != nil {
		return Connect{Version: c.Version, Size: size}, size, err
	}
	return c, size, nil
}

// decodeBody decodes the variable header and the payload, in the order of
// [MQTT-3.1.3-1]: client identifier, [will properties], will topic, will
// payload, user name, password.
func (c *Connect) decodeBody(body []byte, keepWill bool) error {
	r := cursor{b: body}
	if err := c.decodeProtocol(&r); err != nil {
		return err
	}
	if err := c.decodeFlags(&r); err != nil {
		return err
	}
	var odd error // the first disallowed string, refused once the packet is known to be well formed
	if c.Version == V5 {
		var err error
		if odd, err = decodeProperties(&r, "properties", &connectProperties, c); err != nil {
			return err
		}
	}
	id, err := r.str("client identifier") // [MQTT-3.1.3-3] [MQTT-3.1.3-4]
	if err != nil {
		return err
	}
	odd = cmp.Or(odd, disallowed(id, "client identifier", RefuseIdentifier))
	if c.WillFlag { // [MQTT-3.1.2-9]
		topic, willOdd, err := c.decodeWill(&r, keepWill)
		if err != nil {
			return err
		}
		odd = cmp.Or(odd, willOdd, disallowed(topic, "will topic", RefuseWillTopic))
	}
	user, err := c.decodeCredentials(&r)
	if err != nil {
		return err
	}
	if r.left() != 0 { // the remaining length must be what the fields use
		return malformed("payload", errTrailing)
	}
	if odd = cmp.Or(odd, disallowed(user, "user name", RefuseUsername)); odd != nil {
		return odd // only once the packet is known to be well formed
	}
	c.ClientID, c.Username = twoStrings(id, user)
	return nil
}

// decodeCredentials reads the user name and steps over the password, which
// is not kept.
func (c *Connect) decodeCredentials(r *cursor) (user []byte, err error) {
	if c.HasUsername { // [MQTT-3.1.2-19] [MQTT-3.1.3-11] v3.1.1, [MQTT-3.1.2-17] [MQTT-3.1.3-10] v5
		if user, err = r.str("user name"); err != nil {
			return nil, err
		}
	}
	if c.HasPassword { // [MQTT-3.1.2-21] v3.1.1, [MQTT-3.1.2-19] v5
		if _, ok := r.binary(); !ok {
			return nil, malformed("password", errPastEnd)
		}
	}
	return user, nil
}

// decodeProtocol checks the protocol name and level [MQTT-3.1.2-1]
// [MQTT-3.1.2-2].
func (c *Connect) decodeProtocol(r *cursor) error {
	name, ok := r.binary()
	if !ok {
		return malformed("protocol name", errPastEnd)
	}
	mqtt := string(name) == "MQTT"
	if !mqtt && string(name) != "MQIsdp" {
		return malformed("protocol name", errUnknownProtocol)
	}
	if c.Version, ok = r.u8(); !ok {
		return malformed("protocol level", errPastEnd)
	}
	if mqtt && (c.Version == V311 || c.Version == V5) || !mqtt && c.Version == V31 {
		return nil
	}
	return fmt.Errorf("%w: %q level %d", ErrUnsupportedVersion, name, c.Version)
}

// decodeFlags reads the connect flags and the keep alive.
func (c *Connect) decodeFlags(r *cursor) error {
	f, ok := r.u8()
	if !ok {
		return malformed("connect flags", errPastEnd)
	}
	c.CleanStart = f&flagCleanStart != 0
	c.WillFlag = f&flagWill != 0
	c.WillQoS = f & flagWillQoS >> 3
	c.WillRetain = f&flagWillRetain != 0
	c.HasPassword = f&flagPassword != 0
	c.HasUsername = f&flagUsername != 0
	switch {
	case f&flagReserved != 0: // [MQTT-3.1.2-3]
		return malformed("connect flags", errReservedFlag)
	case c.WillQoS == 3: // [MQTT-3.1.2-14] v3.1.1, [MQTT-3.1.2-12] v5
		return malformed("connect flags", errWillQoS)
	case !c.WillFlag && (c.WillQoS != 0 || c.WillRetain):
		// [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15] v3.1.1,
		// [MQTT-3.1.2-11] [MQTT-3.1.2-13] v5
		return malformed("connect flags", errWillFlags)
	case c.Version != V5 && c.HasPassword && !c.HasUsername: // [MQTT-3.1.2-22] v3.1.1
		return malformed("connect flags", errPasswordNoUser)
	}
	if c.KeepAlive, ok = r.u16(); !ok {
		return malformed("keep alive", errPastEnd)
	}
	return nil
}

// decodeWill reads the will properties (v5), topic and payload, and
// returns the topic, and odd as decodeProperties does.
func (c *Connect) decodeWill(r *cursor, keep bool) (topic []byte, odd, err error) {
	if c.Version == V5 {
		if odd, err = decodeProperties(r, "will properties", &willProperties, nil); err != nil {
			return nil, nil, err
		}
	}
	topic, err = r.str("will topic") // [MQTT-3.1.3-10] v3.1.1, [MQTT-3.1.3-9] v5
	if err != nil {
		return nil, nil, err
	}
	if err := checkTopicName(topic); err != nil {
		return nil, nil, malformed("will topic", err)
	}
	payload, ok := r.binary()
	if !ok {
		return nil, nil, malformed("will payload", errPastEnd)
	}
	if keep {
		c.WillTopic, c.WillPayload = string(topic), bytes.Clone(payload)
	}
	return topic, odd, nil
}

// twoStrings copies a and b into one allocation: the CONNECT costs one
// allocation however many of its strings are set, and nothing aliases the
// caller's buffer.
func twoStrings(a, b []byte) (string, string) {
	if len(a)+len(b) == 0 {
		return "", ""
	}
	var sb strings.Builder
	sb.Grow(len(a) + len(b))
	sb.Write(a)
	sb.Write(b)
	s := sb.String()
	return s[:len(a)], s[len(a):]
}
