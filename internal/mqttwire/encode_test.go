package mqttwire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

var roundTrips = []Connect{
	{Version: V31, CleanStart: true, KeepAlive: 60, ClientID: "c31"},
	{Version: V31, ClientID: "c31u", HasUsername: true, Username: "u", HasPassword: true, Password: []byte("p")},
	{Version: V311, KeepAlive: 30, ClientID: "zen"},
	{Version: V311, CleanStart: true, ClientID: "w", HasUsername: true, Username: "user",
		WillFlag: true, WillQoS: 2, WillRetain: true, WillTopic: "a/b", WillPayload: []byte("gone")},
	{Version: V311, CleanStart: true},
	{Version: V5, CleanStart: true, KeepAlive: 10, ClientID: "v5"},
	{Version: V5, SessionExpiry: 3600, ClientID: "se", WillFlag: true, WillQoS: 1, WillTopic: "t",
		WillPayload: []byte("x"), HasPassword: true, Password: []byte{1, 2}},
	{Version: V5, ClientID: "héllo", HasUsername: true, Username: "ü", HasPassword: true, Password: []byte("pw")},
}

func TestAppendConnectRoundTrip(t *testing.T) {
	prefix := []byte("keep")
	for _, c := range roundTrips {
		enc := AppendConnect(bytes.Clone(prefix), &c)
		if !bytes.HasPrefix(enc, prefix) {
			t.Fatalf("AppendConnect overwrote dst")
		}
		enc = enc[len(prefix):]
		got, n, err := parseConnect(enc, true)
		want := c
		want.Password, want.Size = nil, len(enc) // never parsed
		if err != nil || n != len(enc) {
			t.Fatalf("%+v: n, err = %d, %v", c, n, err)
		}
		if d := connectDiff(got, want); d != "" {
			t.Fatal(d)
		}
		checkMochiDecodes(t, &c, enc)
	}
}

// checkMochiDecodes has mochi decode and validate our encoding of c, and
// compares it with mochi's own encoding.
func checkMochiDecodes(t *testing.T, c *Connect, enc []byte) {
	t.Helper()
	var pk packets.Packet
	pk.FixedHeader.Decode(enc[0])
	_, hdr, _ := connectHeader(enc)
	if err := pk.ConnectDecode(enc[hdr:]); err != nil {
		t.Fatalf("mochi cannot decode %+v: %v", c, err)
	}
	if code := pk.ConnectValidate(); code != packets.CodeSuccess {
		t.Fatalf("mochi finds %+v invalid: %v", c, code)
	}
	want := *c
	want.Password, want.Size = nil, len(enc)
	if d := connectDiff(fromMochi(&pk, len(enc)), want); d != "" || !bytes.Equal(pk.Connect.Password, c.Password) {
		t.Fatalf("mochi decodes %s, password %q", d, pk.Connect.Password)
	}
	var buf bytes.Buffer
	mk := mochiConnect(c)
	if err := mk.ConnectEncode(&buf); err != nil || !bytes.Equal(buf.Bytes(), enc) {
		t.Fatalf("mochi encodes % x\nwe encode     % x", buf.Bytes(), enc)
	}
}

// Will QoS and retain are not written without the will flag.
func TestAppendConnectMasksWillFlags(t *testing.T) {
	enc := AppendConnect(nil, &Connect{Version: V311, ClientID: "c", WillQoS: 3, WillRetain: true})
	if _, _, err := ParseConnect(enc); err != nil {
		t.Fatalf("err = %v", err)
	}
}

// Other levels are written with the 3.1.1 layout, to test refusals.
func TestAppendConnectUnsupportedLevel(t *testing.T) {
	enc := AppendConnect(nil, &Connect{Version: 6, ClientID: "c"})
	if c, _, err := ParseConnect(enc); !errors.Is(err, ErrUnsupportedVersion) || c.Version != 6 {
		t.Fatalf("c.Version, err = %d, %v; want 6, ErrUnsupportedVersion", c.Version, err)
	}
}

func TestAppendPanicsOnOversizedFields(t *testing.T) {
	for name, f := range map[string]func(){
		"client id":   func() { AppendConnect(nil, &Connect{Version: V311, ClientID: string(make([]byte, 1<<16))}) },
		"varint":      func() { AppendVarint(nil, MaxVarint+1) },
		"neg. varint": func() { AppendVarint(nil, -1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestAppendDisconnect(t *testing.T) {
	tests := []struct {
		version, reason byte
		want            []byte
	}{
		{V31, 0, []byte{0xe0, 0x00}},
		{V311, Code5SessionTakenOver, []byte{0xe0, 0x00}}, // no reason codes before v5
		{V5, Code5NormalDisconnection, []byte{0xe0, 0x00}},
		{V5, Code5SessionTakenOver, []byte{0xe0, 0x01, 0x8e}},
	}
	for _, tt := range tests {
		got := AppendDisconnect(nil, tt.version, tt.reason)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("AppendDisconnect(%d, %#x) = % x; want % x", tt.version, tt.reason, got, tt.want)
		}
		// mochi reads a v5 reason code only when the remaining length is
		// above 1, although v5 §3.14.2.1 allows "E0 01 reason" (the property
		// length is then 0, §3.14.2.2.1); so only the type is checked here.
		pk := packets.Packet{ProtocolVersion: tt.version}
		pk.FixedHeader.Decode(got[0])
		pk.FixedHeader.Remaining = int(got[1])
		if err := pk.DisconnectDecode(got[2:]); err != nil || pk.FixedHeader.Type != packets.Disconnect {
			t.Errorf("mochi decodes % x as type %d, err %v", got, pk.FixedHeader.Type, err)
		}
	}
}

func TestAppendPingreq(t *testing.T) {
	got := AppendPingreq([]byte{1})
	var fh packets.FixedHeader
	if !bytes.Equal(got, []byte{1, 0xc0, 0x00}) || fh.Decode(got[1]) != nil || fh.Type != packets.Pingreq {
		t.Fatalf("AppendPingreq = % x", got)
	}
}

func TestVarint(t *testing.T) {
	for _, v := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, MaxVarint} {
		enc := AppendVarint(nil, v)
		var buf bytes.Buffer
		(&packets.FixedHeader{Type: packets.Pingreq, Remaining: v}).Encode(&buf)
		if !bytes.Equal(enc, buf.Bytes()[1:]) {
			t.Errorf("AppendVarint(%d) = % x; mochi writes % x", v, enc, buf.Bytes()[1:])
		}
		got, n, err := ParseVarint(append(enc, 0xff))
		if got != v || n != len(enc) || err != nil {
			t.Errorf("ParseVarint(% x) = %d, %d, %v", enc, got, n, err)
		}
		for i := range len(enc) {
			if _, _, err := ParseVarint(enc[:i]); err != ErrShort {
				t.Errorf("ParseVarint(% x) err = %v; want ErrShort", enc[:i], err)
			}
		}
	}
	if v, n, err := ParseVarint([]byte{0x80, 0x00}); v != 0 || n != 2 || err != nil {
		t.Errorf("non-minimal 0: %d, %d, %v; want accepted", v, n, err)
	}
	if _, _, err := ParseVarint([]byte{0x80, 0x80, 0x80, 0x80}); !errors.Is(err, ErrMalformed) {
		t.Errorf("four continuation bits: err = %v; want ErrMalformed before a fifth byte", err)
	}
}
