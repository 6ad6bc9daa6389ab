package mqttwire

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// cursor walks the body of one packet. Every read checks the bytes left;
// ok == false means the field runs past the end of the packet.
type cursor struct {
	b   []byte
	off int
}

func (c *cursor) left() int { return len(c.b) - c.off }

func (c *cursor) u8() (byte, bool) {
	if c.left() < 1 {
		return 0, false
	}
	v := c.b[c.off]
	c.off++
	return v, true
}

func (c *cursor) u16() (uint16, bool) {
	if c.left() < 2 {
		return 0, false
	}
	v := binary.BigEndian.Uint16(c.b[c.off:])
	c.off += 2
	return v, true
}

func (c *cursor) u32() (uint32, bool) {
	if c.left() < 4 {
		return 0, false
	}
	v := binary.BigEndian.Uint32(c.b[c.off:])
	c.off += 4
	return v, true
}

// binary reads Binary Data: a two-byte length and that many bytes (v3.1.1
// §1.5.3 for strings and §3.1.3 for the binary fields, v5 §1.5.6).
func (c *cursor) binary() ([]byte, bool) {
	l, ok := c.u16()
	if !ok || c.left() < int(l) {
		return nil, false
	}
	end := c.off + int(l)
	v := c.b[c.off:end:end]
	c.off = end
	return v, true
}

// str reads a UTF-8 Encoded String and validates it.
func (c *cursor) str(field string) ([]byte, error) {
	s, ok := c.binary()
	if !ok {
		return nil, malformed(field, errPastEnd)
	}
	if !validUTF8(s) {
		return nil, malformed(field, errBadUTF8)
	}
	return s, nil
}

// varint reads a Variable Byte Integer inside the packet.
func (c *cursor) varint(field string) (int, error) {
	v, n, err := ParseVarint(c.b[c.off:])
	switch {
	case err == ErrShort:
		return 0, malformed(field, errPastEnd)
	case err != nil:
		return 0, malformed(field, errTooLong)
	}
	c.off += n
	return v, nil
}

// ValidString reports whether s can be an MQTT UTF-8 Encoded String: at
// most 65,535 bytes of well-formed UTF-8 without U+0000.
func ValidString(s string) bool { return len(s) <= 65535 && validUTF8([]byte(s)) }

// AllowedString reports whether s is a valid MQTT UTF-8 Encoded String
// (ValidString) without the code points ParseConnect refuses in a client
// identifier, user name or will topic (ErrDisallowedChar).
func AllowedString(s string) bool { return ValidString(s) && allowedChars([]byte(s)) }

// allowedChars reports whether s, valid UTF-8, holds none of the code points
// strings SHOULD NOT hold (v3.1.1 §1.5.3, v5 §1.5.4): control characters
// U+0001–U+001F and U+007F–U+009F, and non-characters U+FDD0–U+FDEF and
// the last two of every plane (U+nFFFE, U+nFFFF).
func allowedChars(s []byte) bool {
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r <= 0x9f || r >= 0xfdd0 && r <= 0xfdef || r&0xfffe == 0xfffe {
			return false
		}
		i += n
	}
	return true
}

// validUTF8 reports whether s is well-formed UTF-8 (no surrogates, no
// overlong forms) without U+0000: [MQTT-1.5.3-1] [MQTT-1.5.3-2] (v3.1.1),
// [MQTT-1.5.4-1] [MQTT-1.5.4-2] (v5). A BOM is kept as is [MQTT-1.5.3-3].
func validUTF8(s []byte) bool {
	for i, c := range s {
		if c == 0 {
			return false
		}
		if c >= utf8.RuneSelf {
			rest := s[i:]
			return utf8.Valid(rest) && bytes.IndexByte(rest, 0) < 0
		}
	}
	return true
}

// checkTopicName applies the rules for a Topic Name, which a will topic is
// (it is published as one): at least one character [MQTT-4.7.3-1] and no
// wildcards [MQTT-4.7.1-1] (v3.1.1), [MQTT-4.7.0-1] (v5), [MQTT-3.3.2-2].
// UTF-8 validity is checked by the caller.
func checkTopicName(t []byte) error {
	if len(t) == 0 {
		return errEmptyTopic
	}
	if bytes.IndexByte(t, '+') >= 0 || bytes.IndexByte(t, '#') >= 0 {
		return errWildcard
	}
	return nil
}
