package mqttwire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

// verdict is what a decoder made of an input.
type verdict int

const (
	accepted verdict = iota
	rejected
	incomplete
)

func (v verdict) String() string { return [...]string{"accepted", "rejected", "incomplete"}[v] }

// mochiResult is mochi-mqtt's decision on an input, reached the way its
// server reads a CONNECT: FixedHeader.Decode, the length, ConnectDecode on
// the body, then ConnectValidate.
type mochiResult struct {
	v    verdict
	pk   packets.Packet
	size int
	err  error
}

func mochiParse(b []byte) (m mochiResult) {
	defer func() {
		if p := recover(); p != nil {
			m = mochiResult{v: rejected, err: fmt.Errorf("mochi panicked: %v", p)}
		}
	}()
	if len(b) == 0 {
		return mochiResult{v: incomplete}
	}
	if err := m.pk.FixedHeader.Decode(b[0]); err != nil || m.pk.FixedHeader.Type != packets.Connect {
		return mochiResult{v: rejected, err: fmt.Errorf("fixed header %#x: %v", b[0], err)}
	}
	rem, bu, err := packets.DecodeLength(bytes.NewReader(b[1:]))
	switch {
	case err == io.EOF:
		return mochiResult{v: incomplete}
	case err != nil:
		return mochiResult{v: rejected, err: err}
	case len(b) < 1+bu+rem:
		return mochiResult{v: incomplete}
	}
	m.size, m.pk.FixedHeader.Remaining = 1+bu+rem, rem
	if err := m.pk.ConnectDecode(b[1+bu : m.size]); err != nil {
		m.v, m.err = rejected, err
	} else if code := m.pk.ConnectValidate(); code != packets.CodeSuccess {
		m.v, m.err = rejected, code
	}
	return m
}

// disagreement is a class of inputs on which we and mochi decide
// differently, with the reason we are right. Each is recognised from our
// error (or mochi's, when mochi rejects what we accept) and confirmed by a
// check on what mochi decoded.
type disagreement struct {
	ours   error  // our problem, when we reject and mochi does not
	field  string // the start of the field we reject ("" for any)
	mochi  error  // mochi's error, when mochi rejects and we accept
	check  func(m *mochiResult) bool
	reason string
}

func always(*mochiResult) bool { return true }

// propertiesAllowed reports whether the string properties a CONNECT or its
// will may hold are free of the code points AllowedString refuses.
func propertiesAllowed(p packets.Properties) bool {
	ok := allowedChars([]byte(p.AuthenticationMethod)) && allowedChars([]byte(p.ContentType)) && allowedChars([]byte(p.ResponseTopic))
	for _, u := range p.User {
		ok = ok && allowedChars([]byte(u.Key)) && allowedChars([]byte(u.Val))
	}
	return ok
}

var disagreements = []disagreement{
	{ours: errTrailing, field: "payload", check: always, reason: "bytes after the last field: the Remaining Length is the bytes of the variable header and payload (v3.1.1 §2.2.3, v5 §2.1.4), so leftovers break [MQTT-3.1.4-1]; mochi ignores them"},
	{ours: errWillFlags, check: func(m *mochiResult) bool { return !m.pk.Connect.WillFlag && m.pk.Connect.WillQos != 0 },
		reason: "will QoS without the will flag: [MQTT-3.1.2-13] (v3.1.1), [MQTT-3.1.2-11] (v5); mochi checks only will retain"},
	{ours: errWillQoS, check: func(m *mochiResult) bool { return !m.pk.Connect.WillFlag },
		reason: "will QoS 3 without the will flag: [MQTT-3.1.2-13] [MQTT-3.1.2-14] (v3.1.1), [MQTT-3.1.2-11] and §3.1.2.6 (v5); mochi checks the QoS only with the will flag"},
	{ours: errPasswordNoUser, check: func(m *mochiResult) bool { return m.pk.ProtocolVersion != V5 && !m.pk.Connect.UsernameFlag },
		reason: "password flag without user name flag: [MQTT-3.1.2-22] (v3.1.1; v5 allows it); mochi does not check"},
	{ours: errBadUTF8, field: "user name", check: func(m *mochiResult) bool { return !validUTF8(m.pk.Connect.Username) },
		reason: "user name not UTF-8 or with U+0000: [MQTT-3.1.3-11] [MQTT-1.5.3-1] [MQTT-1.5.3-2] (v3.1.1), [MQTT-3.1.3-10] [MQTT-1.5.4-1] [MQTT-1.5.4-2] (v5); mochi reads it as binary"},
	{ours: errWildcard, field: "will topic", check: func(m *mochiResult) bool { return strings.ContainsAny(m.pk.Connect.WillTopic, "+#") },
		reason: "wildcard in the will topic, a topic name: [MQTT-3.3.2-2], [MQTT-4.7.1-1] (v3.1.1), [MQTT-4.7.0-1] (v5); mochi does not check"},
	{ours: errWildcard, field: "will properties: property 0x08", check: always,
		reason: "wildcard in the will's response topic: [MQTT-3.3.2-14] (v5); mochi does not check"},
	{ours: errEmptyTopic, field: "will properties: property 0x08", check: always,
		reason: "empty response topic: a topic name has at least one character [MQTT-4.7.3-1]; mochi does not check"},
	{ours: errDuplicate, check: always,
		reason: "a property given twice: Protocol Error in v5 §3.1.2.11.2–.10 and §3.1.3.2.2–.7; mochi keeps the last"},
	{ours: errBadValue, check: always,
		reason: "receive maximum or maximum packet size 0, request problem/response information or payload format indicator above 1: Protocol Error in v5 §3.1.2.11.3, .4, .6, .7 and §3.1.3.2.3; mochi does not check values"},
	{ours: errAuthNoMethod, check: always,
		reason: "authentication data without authentication method: Protocol Error in v5 §3.1.2.11.10; mochi does not check"},
	{ours: errTooLong, check: always,
		reason: "a Variable Byte Integer of five bytes: at most four (v3.1.1 §2.2.3, v5 §1.5.5); mochi's DecodeLength reads a fifth while the value stays small (80 80 80 80 00)"},
	{ours: errPastEnd, field: "properties", check: always,
		reason: "a property value crossing the end of the property list: the Property Length counts the properties (v5 §2.2.2.1); mochi reads values past it"},
	{ours: errPastEnd, field: "will properties", check: always,
		reason: "a will property value crossing the end of the will property list (v5 §3.1.3.2.1); mochi reads values past it"},
	{ours: ErrDisallowedChar, check: func(m *mochiResult) bool {
		c := &m.pk.Connect
		return !allowedChars([]byte(c.ClientIdentifier)) || !allowedChars(c.Username) || c.WillFlag && !allowedChars([]byte(c.WillTopic)) ||
			!propertiesAllowed(m.pk.Properties) || c.WillFlag && !propertiesAllowed(c.WillProperties)
	}, reason: "a control character (U+0001–U+001F, U+007F–U+009F) or a non-character in the client identifier, user name, will topic or a string property: strings SHOULD NOT hold them and a receiver MAY close (v3.1.1 §1.5.3) or take the packet as malformed (v5 §1.5.4), as mosquitto does; we refuse with a CONNACK before a broker sees it, mochi accepts"},
	{mochi: packets.ErrProtocolViolationWillFlagNoPayload, check: func(m *mochiResult) bool { return len(m.pk.Connect.WillPayload) == 0 && m.pk.Connect.WillTopic != "" },
		reason: "zero-length will payload: [MQTT-3.1.2-9] requires the field, and it is 0–65,535 bytes of binary data (v3.1.1 §3.1.3.3, v5 §3.1.3.4); mochi requires bytes"},
	{mochi: packets.ErrProtocolViolationFlagNoPassword, check: func(m *mochiResult) bool { return len(m.pk.Connect.Password) == 0 },
		reason: "zero-length password: [MQTT-3.1.2-21] (v3.1.1), [MQTT-3.1.2-19] (v5) require the field, and it is 0–65,535 bytes of binary data; mochi requires bytes"},
}

// explain returns the index of the listed disagreement that covers our err
// (or mochi's, when ours is nil), or -1.
func explain(err error, m *mochiResult) int {
	for i, d := range disagreements {
		var matches bool
		if err != nil {
			var fe *fieldError
			matches = d.ours != nil && errors.Is(err, d.ours) &&
				(d.field == "" || errors.As(err, &fe) && strings.HasPrefix(fe.field, d.field))
		} else {
			matches = d.mochi != nil && errors.Is(m.err, d.mochi)
		}
		if matches && d.check(m) {
			return i
		}
	}
	return -1
}

// differential decodes b with ours and mochi's. It returns the index of the
// listed disagreement that applies (-1 when we agree), or an error for a
// disagreement no entry explains.
func differential(b []byte) (int, error) {
	m := mochiParse(b)
	c, n, err := parseConnect(b, true)
	ours := accepted
	switch {
	case errors.Is(err, ErrShort):
		ours = incomplete
	case err != nil:
		ours = rejected
	}
	switch {
	case ours == accepted && m.v == accepted:
		want := fromMochi(&m.pk, m.size)
		if d := connectDiff(c, want); d != "" || n != m.size {
			return -1, fmt.Errorf("both accept % x but decode differently (n %d, mochi %d):\n%s", b, n, m.size, d)
		}
		return -1, nil
	case ours == m.v:
		return -1, nil
	case ours == rejected, ours == accepted && m.v == rejected:
		if i := explain(err, &m); i >= 0 {
			return i, nil
		}
	}
	return -1, fmt.Errorf("unexplained disagreement on % x:\n ours  %v: %v\n mochi %v: %v", b, ours, err, m.v, m.err)
}
