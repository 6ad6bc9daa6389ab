package mqttwire

import "errors"

// connectLayout locates the fields of a valid CONNECT that RewriteConnect
// replaces and ConnectPassword reads: offsets into the whole packet, each
// field's span including its two-byte length. A span is [0, 0) when absent.
type connectLayout struct {
	body      int    // start of the variable header (after the fixed header)
	flags     int    // offset of the connect flags byte
	id        [2]int // client identifier
	user      [2]int // user name (absent without the user name flag)
	pass      [2]int // password (absent without the password flag)
	afterWill int    // end of the will fields (== id[1] without a will)
}

// layoutConnect parses b (which must be exactly one CONNECT) and returns
// where its fields are. Validation is ParseConnect's: any packet it refuses
// is refused here with the same error.
func layoutConnect(b []byte) (Connect, connectLayout, error) {
	c, n, err := ParseConnect(b)
	if err != nil {
		return c, connectLayout{}, err
	}
	if n != len(b) {
		return c, connectLayout{}, malformed("payload", errTrailing)
	}
	_, hdr, _ := connectHeader(b)
	l := connectLayout{body: hdr}
	r := cursor{b: b, off: hdr}
	r.binary() // protocol name
	r.u8()     // level
	l.flags = r.off
	r.u8()
	r.u16() // keep alive
	if c.Version == V5 {
		skipProperties(&r)
	}
	l.id = r.span()
	if c.WillFlag {
		if c.Version == V5 {
			skipProperties(&r)
		}
		r.binary() // topic
		r.binary() // payload
	}
	l.afterWill = r.off
	if c.HasUsername {
		l.user = r.span()
	}
	if c.HasPassword {
		l.pass = r.span()
	}
	return c, l, nil
}

// span steps over one length-prefixed field and returns where it lay.
func (c *cursor) span() [2]int {
	start := c.off
	c.binary()
	return [2]int{start, c.off}
}

func skipProperties(r *cursor) {
	n, _ := r.varint("properties")
	r.off += n
}

// ErrRewrite: the value to write into a CONNECT is not a valid UTF-8
// Encoded String (over 65,535 bytes, invalid UTF-8 or U+0000) or holds a
// code point ParseConnect refuses (ErrDisallowedChar), or the packet would
// exceed MaxVarint.
var ErrRewrite = errors.New("mqttwire: cannot rewrite CONNECT field")

// RewriteConnect appends to dst the CONNECT pkt (exactly one valid packet,
// as ParseConnect accepts) with its client identifier replaced by *clientID
// and its user name by *username, each only when not nil. A user name is
// added (with its flag) when the packet had none. Every other byte — protocol
// name and level, the other flags, keep alive, the v5 properties in their
// order, the will properties, topic and payload, the password — is copied as
// it was; only the remaining length is recomputed.
func RewriteConnect(dst, pkt []byte, clientID, username *string) ([]byte, error) {
	_, l, err := layoutConnect(pkt)
	if err != nil {
		return dst, err
	}
	for _, v := range []*string{clientID, username} {
		if v != nil && !AllowedString(*v) { // what ParseConnect takes
			return dst, ErrRewrite
		}
	}
	id := pkt[l.id[0]:l.id[1]]
	if clientID != nil {
		id = appendBinary(nil, *clientID)
	}
	user := pkt[l.user[0]:l.user[1]]
	if username != nil {
		user = appendBinary(nil, *username)
	}
	pre := pkt[l.body:l.id[0]] // protocol name, level, flags, keep alive, properties
	will := pkt[l.id[1]:l.afterWill]
	pass := pkt[l.pass[0]:l.pass[1]]
	rem := len(pre) + len(id) + len(will) + len(user) + len(pass)
	if rem > MaxVarint {
		return dst, ErrRewrite
	}
	dst = append(dst, connectByte)
	dst = AppendVarint(dst, rem)
	flagAt := len(dst) + l.flags - l.body
	dst = append(dst, pre...)
	if username != nil {
		dst[flagAt] |= flagUsername // [MQTT-3.1.2-18] v3.1.1, [MQTT-3.1.2-16] v5
	}
	dst = append(dst, id...)
	dst = append(dst, will...)
	dst = append(dst, user...)
	return append(dst, pass...), nil
}

// ConnectPassword returns the password the CONNECT pkt (exactly one valid
// packet) carries, aliasing pkt, and whether it has one. It is for an
// authentication call; callers must not keep or log it.
func ConnectPassword(pkt []byte) ([]byte, bool, error) {
	c, l, err := layoutConnect(pkt)
	if err != nil || !c.HasPassword {
		return nil, false, err
	}
	return pkt[l.pass[0]+2 : l.pass[1]], true, nil
}
