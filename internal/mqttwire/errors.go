package mqttwire

import (
	"errors"
	"fmt"
)

// Errors returned by the decoders. Most are wrapped with detail (the field and
// the problem); test them with errors.Is.
var (
	// ErrNotConnect: the first byte is not 0x10 (CONNECT with flags 0), so the
	// connection is not MQTT (HTTP, TLS, PROXY protocol) or did not start with
	// a CONNECT [MQTT-3.1.0-1]. Close without answering.
	ErrNotConnect = errors.New("mqttwire: not an MQTT CONNECT")
	// ErrMalformed: the packet breaks the wire format or a rule of the spec
	// [MQTT-3.1.4-1]. Close without answering.
	ErrMalformed = errors.New("mqttwire: malformed packet")
	// ErrTooLarge: the remaining length announces a packet larger than the
	// caller's limit; detected from the fixed header alone.
	ErrTooLarge = errors.New("mqttwire: packet too large")
	// ErrUnsupportedVersion: the protocol name is MQTT's but the level is not
	// one we speak (or does not match the name). Answer CONNACK 0x01 and close
	// [MQTT-3.1.2-2]. Connect.Version holds the level that was sent.
	ErrUnsupportedVersion = errors.New("mqttwire: unsupported protocol version")
	// ErrShort: the bytes given end before the packet does; read more.
	ErrShort = errors.New("mqttwire: need more bytes")
	// ErrDisallowedChar: the client identifier, user name or will topic
	// holds a code point a UTF-8 Encoded String should not: a control
	// character (U+0001–U+001F, U+007F–U+009F) or a non-character (U+FDD0–
	// U+FDEF, U+nFFFE, U+nFFFF). The receiver MAY close the connection
	// (v3.1.1 §1.5.3) or take the packet as malformed (v5 §1.5.4), and
	// brokers such as mosquitto close. The packet is otherwise valid: answer
	// it with the CONNACK of the refusal RefusalOf returns, and close.
	// Connect.Version is set.
	ErrDisallowedChar = errors.New("mqttwire: control character or non-character")
)

// Problems a fieldError reports; each is also an ErrMalformed.
var (
	errPastEnd         = errors.New("runs past the end")
	errTooLong         = errors.New("variable byte integer longer than 4 bytes")
	errBadUTF8         = errors.New("invalid UTF-8 or U+0000")
	errTrailing        = errors.New("bytes after the last field")
	errUnknownProtocol = errors.New("unknown protocol name")
	errReservedFlag    = errors.New("reserved bit set")
	errWillQoS         = errors.New("will QoS 3")
	errWillFlags       = errors.New("will QoS or will retain set without the will flag")
	errPasswordNoUser  = errors.New("password flag without user name flag")
	errEmptyTopic      = errors.New("empty topic name")
	errWildcard        = errors.New("wildcard in topic name")
	errUnknownProperty = errors.New("property not allowed here")
	errDuplicate       = errors.New("property given twice")
	errBadValue        = errors.New("property value out of range")
	errAuthNoMethod    = errors.New("authentication data without authentication method")
	errNotConnack      = errors.New("not a CONNACK")
	errReservedAck     = errors.New("reserved acknowledge flags set")
	errPresentRefused  = errors.New("session present with a refusal code")
	errConnackLength   = errors.New("wrong remaining length")
)

// fieldError says which field of a packet is malformed and why. It matches
// both ErrMalformed and its problem with errors.Is.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrMalformed, e.field, e.err)
}

func (e *fieldError) Unwrap() []error { return []error{ErrMalformed, e.err} }

func malformed(field string, problem error) error {
	return &fieldError{field: field, err: problem}
}

// charError says which string of a CONNECT holds a disallowed code point
// and how the client is refused for it. It matches ErrDisallowedChar.
type charError struct {
	field string
	why   Refusal
}

func (e *charError) Error() string { return fmt.Sprintf("%v in the %s", ErrDisallowedChar, e.field) }

func (e *charError) Unwrap() error { return ErrDisallowedChar }

// disallowed returns a *charError for field when s holds a code point
// AllowedString refuses, else nil.
func disallowed(s []byte, field string, why Refusal) error {
	if allowedChars(s) {
		return nil
	}
	return &charError{field: field, why: why}
}

// RefusalOf returns how to refuse a CONNECT that ParseConnect or
// ReadConnect refused with err, when that refusal has a CONNACK
// (ErrDisallowedChar); ok is false for every other error.
func RefusalOf(err error) (why Refusal, ok bool) {
	var ce *charError
	if errors.As(err, &ce) {
		return ce.why, true
	}
	return 0, false
}

// errVarint is static so that rejecting a bad length header does not allocate.
var errVarint = malformed("variable byte integer", errTooLong)
