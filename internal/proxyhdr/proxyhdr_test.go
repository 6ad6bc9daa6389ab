package proxyhdr

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"testing"
	"testing/iotest"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

var v2TCP4 = []byte{
	'\r', '\n', '\r', '\n', 0x00, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', // signature
	0x21,       // version 2, command PROXY
	0x11,       // TCP over IPv4
	0x00, 0x0C, // 12 bytes of addresses follow
	203, 0, 113, 7, // source 203.0.113.7
	10, 0, 0, 1, // destination 10.0.0.1
	0x10, 0x92, // source port 4242
	0x07, 0x5B, // destination port 1883
}

var v2Local = []byte{
	'\r', '\n', '\r', '\n', 0x00, '\r', '\n', 'Q', 'U', 'I', 'T', '\n',
	0x20,       // version 2, command LOCAL
	0x00,       // UNSPEC
	0x00, 0x00, // no address block
}

var v2TCP6WithTLV = append([]byte{
	'\r', '\n', '\r', '\n', 0x00, '\r', '\n', 'Q', 'U', 'I', 'T', '\n',
	0x21,       // PROXY
	0x21,       // TCP over IPv6
	0x00, 0x2A, // 36 address bytes + 6 TLV bytes
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source 2001:db8::1
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // destination 2001:db8::2
	0xC3, 0x50, // source port 50000
	0x22, 0xB3, // destination port 8883
}, 0x04, 0x00, 0x03, 'a', 'b', 'c') // a NOOP TLV (type 4) of 3 bytes, skipped

func TestParse(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
	}{
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 4242 1883\r\n"), Header{Version: 1, Source: ap("203.0.113.7:4242"), Dest: ap("10.0.0.1:1883")}},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 50000 8883\r\n"), Header{Version: 1, Source: ap("[2001:db8::1]:50000"), Dest: ap("[2001:db8::2]:8883")}},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}},
		{"v1 unknown with junk", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), Header{Version: 1, Local: true}},
		{"v2 tcp4", v2TCP4, Header{Version: 2, Source: ap("203.0.113.7:4242"), Dest: ap("10.0.0.1:1883")}},
		{"v2 tcp6 tlv", v2TCP6WithTLV, Header{Version: 2, Source: ap("[2001:db8::1]:50000"), Dest: ap("[2001:db8::2]:8883")}},
		{"v2 local", v2Local, Header{Version: 2, Local: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append(append([]byte{}, tc.in...), 0x10, 0x0C) // a CONNECT follows
			h, n, err := Parse(in)
			if err != nil || h != tc.want || n != len(tc.in) {
				t.Fatalf("Parse = %+v, %d, %v; want %+v, %d", h, n, err, tc.want, len(tc.in))
			}
			h, rest, err := Read(iotest.OneByteReader(bytes.NewReader(in)), make([]byte, 0, 16))
			if err != nil || h != tc.want || !bytes.HasPrefix([]byte{0x10, 0x0C}, rest) {
				t.Fatalf("Read = %+v, %x, %v", h, rest, err)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	big := append([]byte{}, v2TCP4[:14]...)
	big = append(big, 0x08, 0x01) // 2049 bytes
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"mqtt connect", "\x10\x0c\x00\x04MQTT"},
		{"http", "GET / HTTP/1.1\r\n"},
		{"v1 bad proto", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"},
		{"v1 family mismatch", "PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n"},
		{"v1 port range", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"},
		{"v1 port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"},
		{"v1 field count", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"},
		{"v1 too long", "PROXY TCP4 " + string(bytes.Repeat([]byte("1"), 120))},
		{"v1 lowercase", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
		{"v2 version 1", string(append(append([]byte{}, v2TCP4[:12]...), 0x11, 0x11, 0, 0))},
		{"v2 command 2", string(append(append([]byte{}, v2TCP4[:12]...), 0x22, 0x11, 0, 0))},
		{"v2 family", string(append(append([]byte{}, v2TCP4[:12]...), 0x21, 0x41, 0, 0))},
		{"v2 short addresses", string(append(append([]byte{}, v2TCP4[:12]...), 0x21, 0x11, 0, 4, 1, 2, 3, 4))},
		{"v2 too long", string(big)},
		{"v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"},
		{"v2 CRC32c wrong", string(withCRC(t, v2TCP4, 0xdeadbeef))},
		{"v2 LOCAL CRC32c wrong", string(withCRC(t, v2Local, 0xdeadbeef))},
		{"v2 LOCAL IPv4 CRC32c wrong", string(withCRC(t, localTCP4(), 0xdeadbeef))},
		{"v2 TLV truncated", string(withTLV(v2TCP4, 0x04, 0x00, 0x05, 'a'))},
		{"v2 TLV header truncated", string(withTLV(v2TCP4, 0x04, 0x00))},
		{"v2 LOCAL TLV truncated", string(withTLV(v2Local, 0x04, 0x00, 0x05, 'a'))},
		{"v2 unix short", string(append(append([]byte{}, v2TCP4[:12]...), 0x21, 0x31, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Parse([]byte(tc.in)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v, want ErrInvalid", tc.in, err)
			}
		})
	}
}

// withTLV is the v2 header base with tlv appended and counted in its length.
func withTLV(base []byte, tlv ...byte) []byte {
	b := append(append([]byte{}, base...), tlv...)
	binary.BigEndian.PutUint16(b[14:16], binary.BigEndian.Uint16(b[14:16])+uint16(len(tlv)))
	return b
}

// localTCP4 is v2TCP4 with the LOCAL command: its addresses are discarded.
func localTCP4() []byte {
	b := append([]byte{}, v2TCP4...)
	b[12] = 0x20
	return b
}

// withCRC is the v2 header base with a PP2_TYPE_CRC32C TLV holding sum, or
// the right checksum when sum is 0.
func withCRC(t testing.TB, base []byte, sum uint32) []byte {
	t.Helper()
	b := withTLV(base, 0x03, 0x00, 0x04, 0, 0, 0, 0)
	if sum == 0 {
		sum = crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	}
	binary.BigEndian.PutUint32(b[len(b)-4:], sum)
	return b
}

// TestCRC32c: a header whose checksum is right is read; a wrong one is
// refused (TestParseRejects), as the spec asks of a receiver that checks.
func TestCRC32c(t *testing.T) {
	h, n, err := Parse(withCRC(t, v2TCP4, 0))
	if err != nil || n != len(v2TCP4)+7 || h.Source.String() != "203.0.113.7:4242" {
		t.Fatalf("%+v %d %v", h, n, err)
	}
	// LOCAL (a proxy's health check) is checked too, and its addresses
	// discarded.
	for _, base := range [][]byte{v2Local, localTCP4()} {
		h, n, err = Parse(withCRC(t, base, 0))
		if err != nil || n != len(base)+7 || h != (Header{Version: 2, Local: true}) {
			t.Fatalf("LOCAL: %+v %d %v", h, n, err)
		}
	}
}

func TestReadShortAndEOF(t *testing.T) {
	for _, in := range [][]byte{[]byte("PROXY TCP4 1.2.3.4"), v2TCP4[:20]} {
		if _, _, err := Parse(in); !errors.Is(err, ErrShort) {
			t.Errorf("Parse(%q): %v, want ErrShort", in, err)
		}
		if _, _, err := Read(bytes.NewReader(in), nil); err != io.ErrUnexpectedEOF {
			t.Errorf("Read(%q): %v, want unexpected EOF", in, err)
		}
	}
	if _, _, err := Read(bytes.NewReader(nil), nil); err != io.EOF {
		t.Errorf("Read(empty): %v, want EOF", err)
	}
}

// TestAgainstGoProxyproto writes headers with go-proxyproto (the library the
// outbound side uses) and parses them back.
func TestAgainstGoProxyproto(t *testing.T) {
	src := &net.TCPAddr{IP: net.ParseIP("198.51.100.9"), Port: 61000}
	dst := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1883}
	for _, v := range []byte{1, 2} {
		hdr := proxyproto.HeaderProxyFromAddrs(v, src, dst)
		b, err := hdr.Format()
		if err != nil {
			t.Fatal(err)
		}
		h, n, err := Parse(b)
		if err != nil || n != len(b) || h.Source.String() != src.String() || h.Dest.String() != dst.String() {
			t.Errorf("v%d: %+v %d %v", v, h, n, err)
		}
	}
}

// differential compares Parse with go-proxyproto's reader on one input.
// Known, intended differences return early.
func differential(t *testing.T, in []byte) {
	h, n, err := Parse(in)
	ref, rerr := proxyproto.Read(bufio.NewReader(bytes.NewReader(in)))
	if err != nil || rerr != nil {
		// We are stricter (length cap, v1 port syntax) or the reference is
		// (it rejects some v2 families we read as local). Only one thing is
		// required: we never accept what the reference finds malformed while
		// claiming a client address.
		if err == nil && !h.Local && rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, proxyproto.ErrNoProxyProtocol) {
			t.Errorf("we accept %q (%+v) but go-proxyproto says %v", in[:n], h, rerr)
		}
		return
	}
	if h.Local {
		return
	}
	s, ok := ref.SourceAddr.(*net.TCPAddr)
	if !ok {
		return
	}
	if got := h.Source.Addr().Unmap(); !got.IsValid() || got.String() != s.IP.String() || int(h.Source.Port()) != s.Port {
		t.Errorf("source %v, go-proxyproto %v for %q", h.Source, s, in)
	}
	differentialSSL(t, in, h, ref)
}

// differentialSSL compares the SSL TLV's verified CN with go-proxyproto's
// tlvparse, when both read the TLVs.
func differentialSSL(t *testing.T, in []byte, h Header, ref *proxyproto.Header) {
	tlvs, err := ref.TLVs()
	if err != nil {
		return
	}
	var want string
	var wantOK bool
	if ssl, found := tlvparse.FindSSL(tlvs); found && (ssl.ClientCertConn() || ssl.ClientCertSess()) && ssl.Verified() {
		want, wantOK = ssl.ClientCN()
		wantOK = wantOK && want != ""
	}
	if got, ok := h.SSL.VerifiedCN(); ok != wantOK || got != want {
		t.Errorf("verified CN %q %v, go-proxyproto %q %v for %q", got, ok, want, wantOK, in)
	}
}

// sslHeader is a v2 header with an SSL TLV carrying a verified CN.
func sslHeader(t testing.TB) []byte {
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN, TLV: []proxyproto.TLV{
		{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")},
		{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte("device-7")}}}
	tlv, err := ssl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hdr := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 61000}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1883})
	hdr.SetTLVs([]proxyproto.TLV{tlv})
	b, _ := hdr.Format()
	return b
}

// TestSSLTLV: the client certificate CN in a v2 header written by
// go-proxyproto (as the load balancer writes it) is read back, and only
// when the TLV says it was verified.
func TestSSLTLV(t *testing.T) {
	src := &net.TCPAddr{IP: net.ParseIP("198.51.100.9"), Port: 61000}
	dst := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1883}
	for _, tc := range []struct {
		verify uint32
		client uint8
		ok     bool
	}{{0, tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN, true},
		{1, tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN, false},
		{0, tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS, true}, // a resumed session (HAProxy)
		{0, tlvparse.PP2_BITFIELD_CLIENT_SSL, false}} {
		ssl := tlvparse.PP2SSL{Client: tc.client, Verify: tc.verify, TLV: []proxyproto.TLV{
			{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte("device-7")}}}
		tlv, err := ssl.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		hdr := proxyproto.HeaderProxyFromAddrs(2, src, dst)
		hdr.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_NOOP, Value: []byte{0}}, tlv})
		b, _ := hdr.Format()
		h, _, err := Parse(b)
		cn, ok := h.SSL.VerifiedCN()
		if err != nil || ok != tc.ok || (ok && cn != "device-7") {
			t.Errorf("%+v: CN %q %v, %v; want ok=%v", tc, cn, ok, err, tc.ok)
		}
		differential(t, b)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range [][]byte{v2TCP4, v2Local, v2TCP6WithTLV, []byte("PROXY TCP4 203.0.113.7 10.0.0.1 4242 1883\r\n"),
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 50000 8883\r\n"), []byte("PROXY UNKNOWN\r\n")} {
		f.Add(s, uint8(3))
	}
	f.Add(sslHeader(f), uint8(4))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		h, n, err := Parse(in)
		if err == nil && (n > len(in) || n == 0) {
			t.Fatalf("n=%d of %d", n, len(in))
		}
		// Reading in chunks gives the same answer as parsing at once.
		r := iotest.HalfReader(bytes.NewReader(in))
		if chunk%2 == 0 {
			r = iotest.OneByteReader(bytes.NewReader(in))
		}
		h2, rest, err2 := Read(r, nil)
		if (err == nil) != (err2 == nil) || (err == nil && (h != h2 || !bytes.HasPrefix(in[n:], rest))) {
			t.Fatalf("Parse %+v,%v vs Read %+v,%v", h, err, h2, err2)
		}
		differential(t, in)
	})
}

func TestLooksLike(t *testing.T) {
	for b, want := range map[string]bool{
		"PROXY TCP4 1.2.3.4": true, "PROXY ": true, "PRO": true, "P": true,
		"\r\n\r\n\x00\r\nQUIT\n\x21": true, "\r\n\r": true, "\r": true,
		"": false, "PROXZ": false, "\x10\x0c\x00\x04MQTT": false, "\x16\x03\x01": false, "GET / HTTP/1.1": false,
		"\r\n\r\n\x00\r\nQUIX": false,
	} {
		if got := LooksLike([]byte(b)); got != want {
			t.Errorf("LooksLike(%q) = %v; want %v", b, got, want)
		}
	}
}
