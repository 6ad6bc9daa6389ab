package mqttwire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestConnackRoundTrip(t *testing.T) {
	for _, v := range []byte{V31, V311, V5} {
		for _, sp := range []bool{false, true} {
			for _, code := range []byte{0x00, Code3NotAuthorized, Code5ServerBusy} {
				enc := AppendConnack(nil, v, sp, code)
				gotSP, gotCode, n, err := ParseConnack(enc, v)
				wantSP := sp && v != V31 // 3.1 has no session present
				switch {
				case sp && code != 0 && v != V31: // [MQTT-3.2.2-4] v3.1.1, [MQTT-3.2.2-6] v5
					if !errors.Is(err, errPresentRefused) {
						t.Errorf("v%d %v %#x: err = %v; want errPresentRefused", v, sp, code, err)
					}
				case err != nil || n != len(enc) || gotSP != wantSP || gotCode != code:
					t.Errorf("v%d %v %#x: % x parses as %v %#x %d %v", v, sp, code, enc, gotSP, gotCode, n, err)
				}
				pk := packets.Packet{ProtocolVersion: v}
				if err := pk.ConnackDecode(enc[2:]); err != nil || pk.SessionPresent != sp || pk.ReasonCode != code {
					t.Errorf("mochi decodes % x as %v %#x, %v", enc, pk.SessionPresent, pk.ReasonCode, err)
				}
			}
		}
	}
	if got := AppendConnack(nil, V5, false, Code5PacketTooLarge); !bytes.Equal(got, []byte{0x20, 3, 0, 0x95, 0}) {
		t.Errorf("v5 CONNACK = % x", got)
	}
}

// mochi's own CONNACK fixtures. Some set session present with a refusal
// code, which the spec forbids ([MQTT-3.2.2-4] v3.1.1, [MQTT-3.2.2-6] v5) and
// mochi's server never sends (SendConnack clears it); we reject those.
func TestParseConnackMochiFixtures(t *testing.T) {
	for _, tc := range packets.TPacketData[packets.Connack] {
		if tc.Group == "encode" { // their RawBytes are not what is sent
			continue
		}
		v := V311
		if tc.Packet != nil && tc.Packet.ProtocolVersion != 0 {
			v = tc.Packet.ProtocolVersion
		}
		sp, code, n, err := ParseConnack(tc.RawBytes, v)
		switch {
		case tc.FailFirst != nil:
			if err == nil {
				t.Errorf("%s: accepted what mochi rejects", tc.Desc)
			}
		case tc.Packet.SessionPresent && tc.Packet.ReasonCode != 0:
			if !errors.Is(err, errPresentRefused) {
				t.Errorf("%s: err = %v; want errPresentRefused", tc.Desc, err)
			}
		case err != nil || n != len(tc.RawBytes) || sp != tc.Packet.SessionPresent || code != tc.Packet.ReasonCode:
			t.Errorf("%s: %v %#x %d %v; mochi says %v %#x", tc.Desc, sp, code, n, err, tc.Packet.SessionPresent, tc.Packet.ReasonCode)
		}
	}
}

func TestParseConnackRejects(t *testing.T) {
	tests := []struct {
		name    string
		raw     []byte
		version byte
		why     error
	}{
		{"CONNECT", []byte{0x10, 0x02, 0x00, 0x00}, V311, errNotConnack},
		{"v3 with properties", []byte{0x20, 0x03, 0x00, 0x00, 0x00}, V311, errConnackLength},
		{"v5 without property length", []byte{0x20, 0x02, 0x00, 0x00}, V5, errConnackLength},
		{"v5 property length too long", []byte{0x20, 0x03, 0x00, 0x00, 0x05}, V5, errConnackLength},
		{"v5 bytes after properties", []byte{0x20, 0x04, 0x00, 0x00, 0x00, 0x00}, V5, errConnackLength},
		{"reserved acknowledge flag", []byte{0x20, 0x02, 0x02, 0x00}, V311, errReservedAck},
		{"session present with refusal", []byte{0x20, 0x02, 0x01, 0x05}, V311, errPresentRefused},
	}
	for _, tt := range tests {
		if _, _, _, err := ParseConnack(tt.raw, tt.version); !errors.Is(err, ErrMalformed) || !errors.Is(err, tt.why) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.why)
		}
	}
	ok := AppendConnack(nil, V5, true, 0)
	for i := range len(ok) {
		if _, _, n, err := ParseConnack(ok[:i], V5); err != ErrShort || n != 0 {
			t.Errorf("ParseConnack(% x) = %d, %v; want ErrShort", ok[:i], n, err)
		}
	}
}

// bigConnack is a v5 CONNACK whose reason string needs a two-byte length.
func bigConnack() []byte {
	reason := bytes.Repeat([]byte{'r'}, 200)
	props := append([]byte{0x1f, 0x00, byte(len(reason))}, reason...) // reason string
	body := append([]byte{0x00, Code5ServerBusy}, AppendVarint(nil, len(props))...)
	body = append(body, props...)
	return append(AppendVarint([]byte{0x20}, len(body)), body...)
}

// TestReadConnackKeepsWhatFollows: however the bytes arrive, ReadConnack
// decodes the CONNACK and returns the bytes after it, never losing one.
func TestReadConnackKeepsWhatFollows(t *testing.T) {
	next := []byte{0x30, 0x03, 0x00, 0x01, 'a'} // the PUBLISH that follows
	tests := []struct {
		connack []byte
		version byte
		code    byte
	}{
		{AppendConnack(nil, V311, true, 0), V311, 0},
		{AppendConnack(nil, V5, false, Code5NotAuthorized), V5, Code5NotAuthorized},
		{bigConnack(), V5, Code5ServerBusy},
	}
	for _, tt := range tests {
		for _, wrap := range []func(io.Reader) io.Reader{nil, iotest.OneByteReader, iotest.HalfReader} {
			all := append(bytes.Clone(tt.connack), next...)
			br := bytes.NewReader(all)
			var r io.Reader = br
			if wrap != nil {
				r = wrap(br)
			}
			rp, err := ReadConnack(r, tt.version, nil)
			rest, _ := io.ReadAll(br)
			if err != nil || rp.Code != tt.code || rp.Size != len(tt.connack) || !bytes.Equal(append(rp.Data, rest...), all) {
				t.Errorf("% x: code %#x, size %d, err %v, read % x; want %#x, %d", tt.connack[:4], rp.Code, rp.Size, err, rp.Data, tt.code, len(tt.connack))
			}
		}
	}
}

// TestReadConnackAuth: an MQTT 5 server may answer AUTH first (enhanced
// authentication); that is handed on, not refused.
func TestReadConnackAuth(t *testing.T) {
	rp, err := ReadConnack(bytes.NewReader([]byte{0xf0, 0x00}), V5, nil)
	if err != nil || rp.Size != 0 || !bytes.Equal(rp.Data, []byte{0xf0, 0x00}) {
		t.Errorf("AUTH: %+v, %v", rp, err)
	}
	if _, err := ReadConnack(bytes.NewReader([]byte{0xf0, 0x00}), V311, nil); !errors.Is(err, errNotConnack) {
		t.Errorf("AUTH to a v3.1.1 CONNECT: %v; want not a CONNACK", err)
	}
}

func TestReadConnackErrors(t *testing.T) {
	ok := AppendConnack(nil, V311, false, 0)
	tests := []struct {
		name string
		r    io.Reader
		want error
	}{
		{"nothing", bytes.NewReader(nil), io.EOF},
		{"one byte", bytes.NewReader(ok[:1]), io.ErrUnexpectedEOF},
		{"header only", bytes.NewReader(ok[:2]), io.ErrUnexpectedEOF},
		{"length cut", bytes.NewReader([]byte{0x20, 0x80}), io.ErrUnexpectedEOF},
		{"not a CONNACK", &strictReader{t: t, chunks: [][]byte{{0x30, 0x05}}}, errNotConnack},
		{"five-byte length", bytes.NewReader([]byte{0x20, 0x80, 0x80, 0x80, 0x80, 0x01}), errTooLong},
		{"too large", &strictReader{t: t, chunks: [][]byte{{0x20, 0x80, 0x80, 0x04}}}, ErrTooLarge},
	}
	for _, tt := range tests {
		if _, err := ReadConnack(tt.r, V311, nil); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.want)
		}
	}
}
