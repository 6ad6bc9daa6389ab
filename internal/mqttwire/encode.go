package mqttwire

import (
	"encoding/binary"
	"math"
)

// AppendConnect appends c encoded as a CONNECT. Version V31 is written with
// protocol name "MQIsdp", V311 and V5 with "MQTT"; V5 adds a property list
// holding SessionExpiry when it is not zero, and an empty will property list.
// Any other Version is written as "MQTT" with that level and the 3.1.1
// layout, which is only useful to test how a server refuses it. Will QoS and
// will retain are written only with WillFlag. It panics if a string or binary
// field exceeds 65,535 bytes or the packet exceeds MaxVarint: bugs in the
// caller.
func AppendConnect(dst []byte, c *Connect) []byte {
	dst = append(dst, connectByte)
	dst = AppendVarint(dst, connectBodyLen(c))
	if c.Version == V31 {
		dst = appendBinary(dst, "MQIsdp")
	} else {
		dst = appendBinary(dst, "MQTT")
	}
	dst = append(dst, c.Version, connectFlags(c))
	dst = binary.BigEndian.AppendUint16(dst, c.KeepAlive)
	if c.Version == V5 {
		dst = appendConnectProperties(dst, c.SessionExpiry)
	}
	dst = appendBinary(dst, c.ClientID)
	if c.WillFlag {
		if c.Version == V5 {
			dst = append(dst, 0) // no will properties
		}
		dst = appendBinary(dst, c.WillTopic)
		dst = appendBinary(dst, c.WillPayload)
	}
	if c.HasUsername {
		dst = appendBinary(dst, c.Username)
	}
	if c.HasPassword {
		dst = appendBinary(dst, c.Password)
	}
	return dst
}

// connectBodyLen is the remaining length AppendConnect writes.
func connectBodyLen(c *Connect) int {
	n := 2 + len("MQTT") + 1 + 1 + 2 + 2 + len(c.ClientID)
	if c.Version == V31 {
		n += len("MQIsdp") - len("MQTT")
	}
	if c.Version == V5 {
		n += 1 + propertiesLen(c.SessionExpiry)
	}
	if c.WillFlag {
		n += 2 + len(c.WillTopic) + 2 + len(c.WillPayload)
		if c.Version == V5 {
			n++
		}
	}
	if c.HasUsername {
		n += 2 + len(c.Username)
	}
	if c.HasPassword {
		n += 2 + len(c.Password)
	}
	return n
}

func connectFlags(c *Connect) byte {
	var f byte
	if c.CleanStart {
		f |= flagCleanStart
	}
	if c.WillFlag {
		f |= flagWill | (c.WillQoS<<3)&flagWillQoS
		if c.WillRetain {
			f |= flagWillRetain
		}
	}
	if c.HasPassword {
		f |= flagPassword
	}
	if c.HasUsername {
		f |= flagUsername
	}
	return f
}

// propertiesLen is the length of the CONNECT properties AppendConnect writes.
func propertiesLen(sessionExpiry uint32) int {
	if sessionExpiry == 0 {
		return 0
	}
	return 1 + 4
}

func appendConnectProperties(dst []byte, sessionExpiry uint32) []byte {
	dst = append(dst, byte(propertiesLen(sessionExpiry)))
	if sessionExpiry != 0 {
		dst = append(dst, propSessionExpiry)
		dst = binary.BigEndian.AppendUint32(dst, sessionExpiry)
	}
	return dst
}

// appendBinary appends a two-byte length and s: a UTF-8 Encoded String or
// Binary Data.
func appendBinary[S string | []byte](dst []byte, s S) []byte {
	if len(s) > math.MaxUint16 {
		panic("mqttwire: field longer than 65535 bytes")
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// AppendDisconnect appends a DISCONNECT. Before v5 it has no body. In v5 the
// reason code is omitted when it is 0x00 (normal disconnection) and otherwise
// written without properties (v5 §3.14.2.1, §3.14.2.2.1).
func AppendDisconnect(dst []byte, version byte, reason byte) []byte {
	if version != V5 || reason == 0 {
		return append(dst, disconnectByte, 0)
	}
	return append(dst, disconnectByte, 1, reason)
}

// AppendPingreq appends a PINGREQ.
func AppendPingreq(dst []byte) []byte {
	return append(dst, pingreqByte, 0)
}
