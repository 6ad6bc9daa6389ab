// Package proxyhdr parses inbound PROXY protocol v1 and v2 headers
// (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt) from a
// buffer, keeping whatever follows the header for the caller to read next.
// It reads only what it needs, caps the header size, and is fuzzed; the
// outbound side is written with github.com/pires/go-proxyproto.
package proxyhdr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

var (
	// ErrShort means more bytes are needed.
	ErrShort = errors.New("proxy header: incomplete")
	// ErrInvalid means the bytes are not a valid PROXY header.
	ErrInvalid = errors.New("proxy header: invalid")
)

// Header is what a PROXY header says about the connection it precedes.
type Header struct {
	Version byte // 1 or 2
	// Local is true for a v2 LOCAL command or a v1 "UNKNOWN" line: the
	// connection is the proxy's own (a health check) and carries no client address.
	Local  bool
	Source netip.AddrPort
	Dest   netip.AddrPort
	// SSL is the v2 PP2_TYPE_SSL TLV: the client's TLS session with the
	// proxy, when the proxy terminated TLS.
	SSL SSL
}

// SSL is what a PROXY v2 header's PP2_TYPE_SSL TLV (section 2.2.5) says.
type SSL struct {
	Present bool   // the header carries the TLV
	Client  byte   // PP2_CLIENT_SSL 0x01, PP2_CLIENT_CERT_CONN 0x02, PP2_CLIENT_CERT_SESS 0x04
	Verify  uint32 // zero when the client presented a certificate and it was verified
	CN      string // PP2_SUBTYPE_SSL_CN: the client certificate's subject CN
}

// VerifiedCN returns the client certificate CN when the proxy says a
// certificate was presented — on this connection (CERT_CONN) or earlier in
// the TLS session it resumed (CERT_SESS, what HAProxy sends for a resumed
// session) — and verified.
func (s SSL) VerifiedCN() (string, bool) {
	if !s.Present || s.Client&(clientCertConn|clientCertSess) == 0 || s.Verify != 0 || s.CN == "" {
		return "", false
	}
	return s.CN, true
}

// MaxV2Length caps a v2 header's address-and-TLV part. The protocol allows
// 65535; real proxies send well under this.
const MaxV2Length = 2048

const v1MaxLen = 107 // "PROXY" line including CRLF, section 2.1

var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// LooksLike reports whether b, the first bytes of a stream, begins like a
// PROXY header: v1's "PROXY " or v2's signature, as far as b goes. One
// byte is enough to tell it from MQTT (0x10), TLS (0x16) and HTTP ("GET").
func LooksLike(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, sig := range [][]byte{v1Sig, v2Sig} {
		if n := min(len(b), len(sig)); bytes.Equal(b[:n], sig[:n]) {
			return true
		}
	}
	return false
}

var v1Sig = []byte("PROXY ")

// Parse parses one header at the start of b and returns it with its length.
func Parse(b []byte) (Header, int, error) {
	if len(b) == 0 {
		return Header{}, 0, ErrShort
	}
	switch b[0] {
	case 'P':
		return parseV1(b)
	case '\r':
		return parseV2(b)
	}
	return Header{}, 0, fmt.Errorf("%w: no PROXY signature", ErrInvalid)
}

// Read reads from r into buf until a whole header is buffered, and returns
// the header and the bytes read past it (the start of the client's stream).
// It never reads more than the header's maximum size plus what one Read returns.
func Read(r io.Reader, buf []byte) (Header, []byte, error) {
	buf = buf[:0]
	for {
		h, n, err := Parse(buf)
		if err == nil {
			return h, buf[n:], nil
		}
		if !errors.Is(err, ErrShort) {
			return Header{}, nil, err
		}
		if cap(buf)-len(buf) < 256 {
			buf = append(buf, make([]byte, 512)...)[:len(buf)]
		}
		k, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if rerr != nil && k == 0 {
			if rerr == io.EOF && len(buf) > 0 {
				rerr = io.ErrUnexpectedEOF
			}
			return Header{}, nil, rerr
		}
	}
}

// parseV1 parses "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n".
func parseV1(b []byte) (Header, int, error) {
	const prefix = "PROXY "
	if n := min(len(b), len(prefix)); !bytes.Equal(b[:n], []byte(prefix)[:n]) {
		return Header{}, 0, fmt.Errorf("%w: bad v1 prefix", ErrInvalid)
	}
	line := b[:min(len(b), v1MaxLen)]
	if lf := bytes.IndexByte(line, '\n'); lf >= 0 && (lf == 0 || line[lf-1] != '\r') {
		// A bare LF cannot start a CRLF later: refuse now, not at the timeout.
		return Header{}, 0, fmt.Errorf("%w: v1 line ends in LF, want CRLF", ErrInvalid)
	}
	end := bytes.Index(line, []byte("\r\n"))
	if end < 0 {
		if len(b) >= v1MaxLen {
			return Header{}, 0, fmt.Errorf("%w: v1 line longer than %d bytes", ErrInvalid, v1MaxLen)
		}
		return Header{}, 0, ErrShort
	}
	f := bytes.Split(b[len(prefix):end], []byte(" "))
	h := Header{Version: 1}
	switch string(f[0]) {
	case "UNKNOWN":
		h.Local = true
		return h, end + 2, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, fmt.Errorf("%w: v1 protocol %q", ErrInvalid, f[0])
	}
	if len(f) != 5 {
		return Header{}, 0, fmt.Errorf("%w: v1 wants 5 fields", ErrInvalid)
	}
	var err error
	if h.Source, err = v1Addr(f[1], f[3], string(f[0]) == "TCP4"); err != nil {
		return Header{}, 0, err
	}
	if h.Dest, err = v1Addr(f[2], f[4], string(f[0]) == "TCP4"); err != nil {
		return Header{}, 0, err
	}
	return h, end + 2, nil
}

func v1Addr(ip, port []byte, v4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(string(ip))
	if err != nil || a.Is4() != v4 || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 address %q", ErrInvalid, ip)
	}
	// Ports are decimal without sign or leading zeros, 0..65535.
	p, err := strconv.ParseUint(string(port), 10, 16)
	if err != nil || (len(port) > 1 && port[0] == '0') {
		return netip.AddrPort{}, fmt.Errorf("%w: v1 port %q", ErrInvalid, port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// parseV2 parses the binary header: signature, version/command, family,
// length, addresses, TLVs (only PP2_TYPE_SSL is read).
func parseV2(b []byte) (Header, int, error) {
	if n := min(len(b), len(v2Sig)); !bytes.Equal(b[:n], v2Sig[:n]) {
		return Header{}, 0, fmt.Errorf("%w: bad v2 signature", ErrInvalid)
	}
	if len(b) < 16 {
		return Header{}, 0, ErrShort
	}
	verCmd, fam := b[12], b[13]
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if verCmd>>4 != 2 || verCmd&0x0F > 1 {
		return Header{}, 0, fmt.Errorf("%w: v2 version/command 0x%02x", ErrInvalid, verCmd)
	}
	if length > MaxV2Length {
		return Header{}, 0, fmt.Errorf("%w: v2 length %d over %d", ErrInvalid, length, MaxV2Length)
	}
	if len(b) < 16+length {
		return Header{}, 0, ErrShort
	}
	h := Header{Version: 2, Local: verCmd&0x0F == 0}
	body := b[16 : 16+length]
	addrLen, known := v2AddrLen[fam]
	if h.Local && (!known || len(body) < addrLen) {
		// LOCAL: use the real endpoints; the address block is discarded.
		return h, 16 + length, nil
	}
	if !known {
		return Header{}, 0, fmt.Errorf("%w: v2 family 0x%02x", ErrInvalid, fam)
	}
	if len(body) < addrLen {
		return Header{}, 0, fmt.Errorf("%w: v2 family 0x%02x needs %d address bytes, has %d", ErrInvalid, fam, addrLen, len(body))
	}
	// TLVs follow the addresses, LOCAL or not: a list that does not split
	// into whole TLVs is refused (as HAProxy does), and so is a wrong CRC32c.
	if !wellFormed(body[addrLen:]) {
		return Header{}, 0, fmt.Errorf("%w: v2 TLVs truncated", ErrInvalid)
	}
	if err := checkCRC(b[:16+length], 16+addrLen); err != nil {
		return Header{}, 0, err
	}
	if h.Local {
		return h, 16 + length, nil
	}
	switch fam {
	case 0x11, 0x12: // TCP or UDP over IPv4
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x21, 0x22: // TCP or UDP over IPv6
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	default: // UNSPEC or unix sockets: no usable client address
		h.Local = true
		return h, 16 + length, nil
	}
	h.SSL = findSSL(body[addrLen:])
	return h, 16 + length, nil
}

// v2AddrLen is the size of a v2 header's address block by family
// (section 2.2): IPv4, IPv6, unix sockets, UNSPEC.
var v2AddrLen = map[byte]int{0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216, 0x00: 0}

// checkCRC verifies a PP2_TYPE_CRC32C TLV among the TLVs that start at
// off in the whole header hdr (section 2.2.3): the CRC32c of the header with
// the checksum's own 4 bytes zeroed. A receiver that can check it must drop
// a connection whose checksum is wrong. A header without one passes. The
// TLVs must be well formed (parseV2 checks first).
func checkCRC(hdr []byte, off int) error {
	for pos := off; pos < len(hdr); {
		typ, v, rest, _ := nextTLV(hdr[pos:])
		if typ == tlvCRC32C && len(v) == 4 {
			want := binary.BigEndian.Uint32(v)
			at := pos + 3
			c := crc32.Update(0, castagnoli, hdr[:at])
			c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
			c = crc32.Update(c, castagnoli, hdr[at+4:])
			if c != want {
				return fmt.Errorf("%w: v2 CRC32c 0x%08x, header sums to 0x%08x", ErrInvalid, want, c)
			}
			return nil
		}
		pos = len(hdr) - len(rest)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PP2_CLIENT_* bits of the SSL TLV (section 2.2.5).
const (
	clientCertConn = 0x02
	clientCertSess = 0x04
)

// TLV types read here (section 2.2).
const (
	tlvCRC32C     = 0x03
	tlvSSL        = 0x20
	tlvSSLVersion = 0x21
	tlvSSLCN      = 0x22
	tlvSSLCipher  = 0x23
)

// findSSL returns the first well-formed PP2_TYPE_SSL TLV among tlvs, a
// well-formed list (parseV2 checks first). A malformed SSL TLV value is no
// error for the header, only no SSL TLV.
func findSSL(tlvs []byte) SSL {
	for len(tlvs) > 0 {
		typ, v, rest, _ := nextTLV(tlvs)
		if typ == tlvSSL {
			if ssl, ok := parseSSL(v); ok {
				return ssl
			}
		}
		tlvs = rest
	}
	return SSL{}
}

// parseSSL reads the SSL TLV's value: client bits, verify, sub-TLVs. A
// client that used TLS must come with its version; every string is
// non-empty and ASCII (UTF-8 for the CN).
func parseSSL(v []byte) (SSL, bool) {
	if len(v) < 5 || !wellFormed(v[5:]) {
		return SSL{}, false
	}
	ssl := SSL{Present: true, Client: v[0], Verify: binary.BigEndian.Uint32(v[1:5])}
	version := ssl.Client&0x01 == 0
	for sub := v[5:]; len(sub) > 0; {
		typ, sv, rest, _ := nextTLV(sub)
		switch typ {
		case tlvSSLVersion, tlvSSLCipher:
			if !ascii(sv) {
				return SSL{}, false
			}
			version = version || typ == tlvSSLVersion
		case tlvSSLCN:
			if len(sv) == 0 || !utf8.Valid(sv) {
				return SSL{}, false
			}
			if ssl.CN == "" {
				ssl.CN = string(sv)
			}
		}
		sub = rest
	}
	return ssl, version
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return len(b) > 0
}

// wellFormed reports whether b splits into whole TLVs.
func wellFormed(b []byte) bool {
	for len(b) > 0 {
		_, _, rest, ok := nextTLV(b)
		if !ok {
			return false
		}
		b = rest
	}
	return true
}

// nextTLV splits the first type-length-value off b.
func nextTLV(b []byte) (typ byte, v, rest []byte, ok bool) {
	if len(b) < 3 {
		return 0, nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if len(b) < 3+n {
		return 0, nil, nil, false
	}
	return b[0], b[3 : 3+n], b[3+n:], true
}
