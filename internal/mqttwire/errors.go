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

// errVarint is static so that rejecting a bad length header does not allocate.
var errVarint = malformed("variable byte integer", errTooLong)
