package mqttwire

// MaxVarint is the largest value a Variable Byte Integer holds: four bytes of
// seven bits (v3.1.1 §2.2.3, v5 §1.5.5).
const MaxVarint = 268_435_455

// First bytes of the fixed headers we read and write: packet type in the high
// nibble, flags in the low nibble, which must be exactly these values
// [MQTT-2.2.2-1] [MQTT-2.2.2-2] (v3.1.1), [MQTT-2.1.3-1] (v5).
const (
	connectByte    byte = 0x10
	connackByte    byte = 0x20
	pingreqByte    byte = 0xc0
	disconnectByte byte = 0xe0
	authByte       byte = 0xf0
)

// AppendVarint appends v as a Variable Byte Integer in the fewest bytes
// [MQTT-1.5.5-1] (v5). It panics if v is negative or above MaxVarint, which
// is a bug in the caller.
func AppendVarint(dst []byte, v int) []byte {
	if v < 0 || v > MaxVarint {
		panic("mqttwire: variable byte integer out of range")
	}
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// ParseVarint decodes the Variable Byte Integer at the start of b and returns
// it with the number of bytes it used. It returns ErrShort if b ends inside
// it, and ErrMalformed once a fourth byte still has its continuation bit set,
// without waiting for a fifth. Encodings longer than needed (0x80 0x00 for 0)
// are accepted, as brokers accept them.
func ParseVarint(b []byte) (v int, n int, err error) {
	for i := 0; i < 4; i++ {
		if i == len(b) {
			return 0, 0, ErrShort
		}
		c := b[i]
		v |= int(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errVarint
}

// ParseConnectHeader decodes the fixed header of the CONNECT that must start
// b and returns the size of the whole packet, fixed header included. It needs
// only the header: ErrNotConnect as soon as b[0] is known, ErrMalformed for a
// length of more than four bytes, ErrShort while the length is incomplete.
func ParseConnectHeader(b []byte) (size int, err error) {
	size, _, err = connectHeader(b)
	return size, err
}

// connectHeader is ParseConnectHeader that also returns the header's length.
func connectHeader(b []byte) (size, hdr int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrShort
	}
	if b[0] != connectByte { // [MQTT-3.1.0-1], [MQTT-2.2.2-2]
		return 0, 0, ErrNotConnect
	}
	rem, n, err := ParseVarint(b[1:])
	if err != nil {
		return 0, 0, err
	}
	return 1 + n + rem, 1 + n, nil
}
