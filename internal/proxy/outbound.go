package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/upstream"
)

// outbound is what is sent to a server and what came back from it.
type outbound struct {
	u       *upstream.Upstream
	first   []byte // PROXY header, then every byte the client sent so far
	version byte
	timeout time.Duration
	reply   []byte // the server's first bytes (CONNACK and whatever followed)
	connack int    // the CONNACK code, -1 if the server answered otherwise (v5 AUTH)
}

func (s *session) outbound(u *upstream.Upstream) (*outbound, error) {
	cfg := u.Config()
	hdr, err := proxyHeader(cfg.ProxyProtocol, s.cl.Remote, s.cl.Local, s.cl.TLS)
	if err != nil {
		return nil, err
	}
	pending := s.cl.TakePending()
	first := make([]byte, 0, len(hdr)+len(s.data)+len(pending))
	first = append(append(append(first, hdr...), s.data...), pending...)
	return &outbound{u: u, first: first, version: s.connect.Version, timeout: cfg.ConnackTimeout.D(), connack: -1}, nil
}

// attempt dials s, sends the PROXY header and the client's bytes, and waits
// for the CONNACK. A server that closes, times out or answers "unavailable"
// or "busy" fails the attempt, so the next server is tried and the client
// never sees it. Any other answer (accepted, or refused for the client's own
// reasons) commits the client to this server.
func (o *outbound) attempt(ctx context.Context, s *upstream.Server) (net.Conn, error) {
	c, err := o.u.DialTCP(ctx, s)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(o.timeout))
	if _, err := c.Write(o.first); err != nil {
		c.Close()
		return nil, err
	}
	reply, code, err := readConnack(c, o.version)
	if err == nil && retryable(o.version, code) {
		err = fmt.Errorf("%w: CONNACK 0x%02x", upstream.ErrDeclined, code)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	o.reply, o.connack = reply, code
	return c, nil
}

// readConnack reads until the server's first packet is known: a whole
// CONNACK (code returned), or any other packet type (code -1: v5 enhanced
// authentication answers with AUTH first). All bytes read are returned.
func readConnack(c net.Conn, version byte) ([]byte, int, error) {
	buf := make([]byte, 0, 64)
	for {
		if len(buf) > 0 && buf[0] != 0x20 {
			return buf, -1, nil
		}
		_, code, _, err := mqttwire.ParseConnack(buf, version)
		if err == nil {
			return buf, int(code), nil
		}
		if !errors.Is(err, mqttwire.ErrShort) {
			return nil, 0, err
		}
		if len(buf) == cap(buf) {
			if len(buf) >= 64<<10 {
				return nil, 0, errors.New("CONNACK too large")
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			return nil, 0, fmt.Errorf("waiting for CONNACK: %w", err)
		}
	}
}

func retryable(version byte, code int) bool {
	if version == mqttwire.V5 {
		switch byte(code) {
		case mqttwire.Code5ServerUnavailable, mqttwire.Code5ServerBusy, mqttwire.Code5UseAnotherServer:
			return true
		}
		return false
	}
	return code == int(mqttwire.Code3ServerUnavailable)
}

// proxyHeader builds the PROXY header for mode (off, v1, v2). v2 carries the
// TLS TLVs (version, and the client certificate CN when one was verified)
// when TLS was terminated here.
func proxyHeader(mode string, src, dst netip.AddrPort, st *tls.ConnectionState) ([]byte, error) {
	if mode == "off" || mode == "" {
		return nil, nil
	}
	v := byte(1)
	if mode == "v2" {
		v = 2
	}
	h := proxyproto.HeaderProxyFromAddrs(v, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
	if v == 2 && st != nil {
		tlv, err := sslTLV(st).Marshal()
		if err != nil {
			return nil, err
		}
		if err := h.SetTLVs([]proxyproto.TLV{tlv}); err != nil {
			return nil, err
		}
	}
	return h.Format()
}

// sslTLV describes the client's TLS session as PROXY v2's PP2_TYPE_SSL.
func sslTLV(st *tls.ConnectionState) tlvparse.PP2SSL {
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1}
	ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsVersion(st.Version))})
	if len(st.PeerCertificates) > 0 {
		ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
	}
	if len(st.VerifiedChains) > 0 {
		ssl.Verify = 0 // zero: a certificate was presented and verified
		cn := st.VerifiedChains[0][0].Subject.CommonName
		ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(cn)})
	}
	ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.CipherSuiteName(st.CipherSuite))})
	return ssl
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return fmt.Sprintf("TLS 0x%04x", v)
}
