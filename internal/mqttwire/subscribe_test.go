package mqttwire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// subPacket builds a SUBSCRIBE or UNSUBSCRIBE: first byte, packet id 1, v5
// properties props (nil: no property list, as before v5), then payload.
func subPacket(first byte, props []byte, payload ...[]byte) []byte {
	body := []byte{0, 1}
	if props != nil {
		body = append(AppendVarint(body, len(props)), props...)
	}
	body = append(body, bytes.Join(payload, nil)...)
	return append(AppendVarint([]byte{first}, len(body)), body...)
}

// filter is a topic filter string followed by options (none: -1).
func filter(f string, opts int) []byte {
	b := append([]byte{byte(len(f) >> 8), byte(len(f))}, f...)
	if opts >= 0 {
		b = append(b, byte(opts))
	}
	return b
}

var noProps = []byte{}

func TestCheckSubscription(t *testing.T) {
	user := append([]byte{0x26}, append(filter("k", -1), filter("v", -1)...)...)
	for _, tc := range []struct {
		name    string
		version byte
		pkt     []byte
		want    error // nil, ErrMalformed or ErrProtocol
	}{
		{"v5 valid", V5, subPacket(0x82, noProps, filter("a/b", 1), filter("$share/g/+", 2)), nil},
		{"v5 properties", V5, subPacket(0x82, append([]byte{0x0b, 5}, user...), filter("a/#", 0x2e)), nil},
		{"v311 valid", V311, subPacket(0x82, nil, filter("a/#", 2), filter("+", 0)), nil},
		{"v31 QoS 1 flags", V31, subPacket(0x82, nil, filter("a", 1)), nil},
		{"v5 unsubscribe", V5, subPacket(0xa2, append([]byte{}, user...), filter("a/b", -1), filter("$share/g/a", -1)), nil},
		{"v311 unsubscribe", V311, subPacket(0xa2, nil, filter("a/+", -1)), nil},

		{"'#' not last", V5, subPacket(0x82, noProps, filter("ok", 1), filter("a/#/b", 1)), ErrMalformed},
		{"'+' in a level", V311, subPacket(0x82, nil, filter("a+", 1)), ErrMalformed},
		{"empty filter", V5, subPacket(0x82, noProps, filter("", 1)), ErrMalformed},
		{"share without filter", V5, subPacket(0x82, noProps, filter("$share/g", 1)), ErrMalformed},
		{"share without name", V311, subPacket(0x82, nil, filter("$share//x", 1)), ErrMalformed},
		{"share name '+'", V5, subPacket(0x82, noProps, filter("$share/+/x", 1)), ErrMalformed},
		{"unsubscribe '#' not last", V5, subPacket(0xa2, noProps, filter("#/a", -1)), ErrMalformed},
		{"unsubscribe empty", V311, subPacket(0xa2, nil, filter("", -1)), ErrMalformed},
		{"invalid UTF-8", V5, subPacket(0x82, noProps, filter("a\xffb", 1)), ErrMalformed},
		{"U+0000", V311, subPacket(0x82, nil, filter("a\x00", 1)), ErrMalformed},
		{"string past the end", V5, subPacket(0x82, noProps, []byte{0, 9, 'a'}), ErrMalformed},
		{"no options", V5, subPacket(0x82, noProps, filter("a", -1)), ErrMalformed},
		{"no packet id", V5, []byte{0x82, 1, 0}, ErrMalformed},
		{"flags 0000", V311, subPacket(0x80, nil, filter("a", 1)), ErrMalformed},
		{"unsubscribe flags 0011", V5, subPacket(0xa3, noProps, filter("a", -1)), ErrMalformed},
		{"v5 reserved option bits", V5, subPacket(0x82, noProps, filter("a", 0xc1)), ErrMalformed},
		{"v311 reserved option bits", V311, subPacket(0x82, nil, filter("a", 0x81)), ErrMalformed},
		{"v311 QoS 3", V311, subPacket(0x82, nil, filter("a", 3)), ErrMalformed},
		{"v5 QoS 3", V5, subPacket(0x82, noProps, filter("a", 3)), ErrProtocol},
		{"retain handling 3", V5, subPacket(0x82, noProps, filter("a", 0x31)), ErrProtocol},
		{"no local shared", V5, subPacket(0x82, noProps, filter("$share/g/a", 0x05)), ErrProtocol},
		{"subscription identifier 0", V5, subPacket(0x82, []byte{0x0b, 0}, filter("a", 1)), ErrProtocol},
		{"subscription identifier twice", V5, subPacket(0x82, []byte{0x0b, 1, 0x0b, 2}, filter("a", 1)), ErrProtocol},
		{"subscription identifier in UNSUBSCRIBE", V5, subPacket(0xa2, []byte{0x0b, 1}, filter("a", -1)), ErrMalformed},
		{"unknown property", V5, subPacket(0x82, []byte{0x01, 1}, filter("a", 1)), ErrMalformed},
		{"properties past the end", V5, []byte{0x82, 3, 0, 1, 9}, ErrMalformed},
	} {
		err := CheckSubscription(tc.pkt, tc.version)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v, want accepted", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		case errors.Is(err, ErrMalformed) && errors.Is(err, ErrProtocol):
			t.Errorf("%s: %v is both malformed and a protocol error", tc.name, err)
		}
	}
}

// FuzzCheckSubscription: no input panics, and mochi decodes every packet
// CheckSubscription accepts (the node's broker never closes on one
// without an answer).
func FuzzCheckSubscription(f *testing.F) {
	f.Add(subPacket(0x82, noProps, filter("a/b", 1)), byte(V5))
	f.Add(subPacket(0x82, []byte{0x0b, 5, 0x26, 0, 1, 'k', 0, 1, 'v'}, filter("$share/g/#", 2)), byte(V5))
	f.Add(subPacket(0xa2, nil, filter("a/+", -1), filter("b", -1)), byte(V311))
	f.Add(subPacket(0x82, nil, filter("a/#/b", 1)), byte(V311))
	f.Fuzz(func(t *testing.T, pkt []byte, version byte) {
		if len(pkt) == 0 || !IsSubscription(pkt[0]) {
			return
		}
		if version != V31 && version != V311 {
			version = V5
		}
		rem, n, err := ParseVarint(pkt[1:])
		if err != nil || 1+n+rem != len(pkt) {
			return // the guard checks whole packets only
		}
		if CheckSubscription(pkt, version) != nil {
			return
		}
		pk := packets.Packet{ProtocolVersion: version}
		if err := pk.FixedHeader.Decode(pkt[0]); err != nil {
			t.Fatalf("accepted %x, mochi's fixed header: %v", pkt, err)
		}
		pk.FixedHeader.Remaining = rem
		body := pkt[1+n:]
		if pkt[0]>>4 == typeSubscribe {
			err = pk.SubscribeDecode(body)
		} else {
			err = pk.UnsubscribeDecode(body)
		}
		if err != nil {
			t.Fatalf("accepted %x (v%d), mochi: %v", pkt, version, err)
		}
	})
}
