package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/relay"
)

// Handshake is what a client's connection sends a server before the client
// is committed to it.
type Handshake struct {
	Version byte   // the client's MQTT version, to read the CONNACK
	Data    []byte // every byte the client sent so far: its CONNECT and anything after
	// Source and Dest are the client's addresses for the PROXY header.
	Source, Dest netip.AddrPort
	// TLS is the client's TLS session when the load balancer terminated it
	// (PROXY v2 carries it in its SSL TLV).
	TLS *tls.ConnectionState
	// Loop: the client is plain TCP, so the relay's event loop will relay
	// the pair; a server addressed by IP is dialled there (relay.Dial), its
	// socket registered once.
	Loop bool
	// Client, when set, is the client's socket on a relay loop: a server
	// addressed by IP is dialled into its slot (relay.ClientConn.Dial), so
	// the relay takes both sockets over as they are.
	Client *relay.ClientConn
}

// first returns the bytes every attempt writes: the PROXY header (when the
// upstream wants one) followed by the client's bytes, in one buffer (one
// write). Without a header it is hs.Data itself: nothing keeps it past
// Connect.
func (u *Upstream) first(hs *Handshake) ([]byte, error) {
	hdr, err := proxyHeader(u.cfg.ProxyProtocol, hs.Source, hs.Dest, hs.TLS)
	if err != nil || hdr == nil {
		return hs.Data, err
	}
	return append(append(make([]byte, 0, len(hdr)+len(hs.Data)), hdr...), hs.Data...), nil
}

// attempt dials s, writes first and waits for the CONNACK, all within
// connack_timeout after the dial. A server that closes, times out or
// answers "unavailable"/"busy"/"use another server" fails the attempt (the
// last ones with ErrDeclined), so the next server is tried and the client
// never sees it. Any other answer, including a refusal for the client's own
// reasons, commits the client to this server.
//
// A dial or CONNACK wait that times out at the client's deadline (ctx's,
// when it comes before the server's own dial_timeout or connack_timeout)
// fails with errClientTimeout: the server did not get its full time, so
// the failure is not its (see blame).
func (u *Upstream) attempt(ctx context.Context, s *Server, first []byte, hs *Handshake) (net.Conn, mqttwire.Reply, error) {
	version := hs.Version
	dialBy := time.Now().Add(u.cfg.DialTimeout.D())
	c, err := u.dial(ctx, s, hs)
	if err != nil {
		return nil, mqttwire.Reply{}, clientsFault(ctx, dialBy, err)
	}
	deadline := time.Now().Add(u.cfg.ConnackTimeout.D())
	own := deadline
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d // the client's own connect_timeout comes first
	}
	c.SetDeadline(deadline)
	rp, err := mqttHandshake(c, first, version)
	err = clientsFault(ctx, own, proxyHint(err, u.cfg.ProxyProtocol))
	if err == nil && rp.Size > 0 && retryable(version, rp.Code) {
		err = fmt.Errorf("%w: CONNACK 0x%02x", ErrDeclined, rp.Code)
	}
	if err != nil {
		c.Close()
		return nil, mqttwire.Reply{}, err
	}
	c.SetDeadline(time.Time{})
	return c, rp, nil
}

// mqttHandshake writes a CONNECT (with whatever precedes and follows it in
// b) and reads the server's answer. Health checks and client connections
// both talk to brokers through it.
func mqttHandshake(c net.Conn, b []byte, version byte) (mqttwire.Reply, error) {
	if _, err := c.Write(b); err != nil {
		return mqttwire.Reply{}, err
	}
	rp, err := mqttwire.ReadConnack(c, version, nil)
	if err != nil {
		return rp, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	return rp, nil
}

// proxyHint adds to a server's hang-up before its CONNACK, when a PROXY
// header went first, the likeliest cause: a broker that does not accept
// the PROXY protocol (mosquitto without it resets the connection).
func proxyHint(err error, mode string) error {
	if err == nil || mode == "off" || mode == "" {
		return err
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w (the server hung up after the PROXY %s header: does it accept the PROXY protocol? see proxy_protocol)", err, mode)
	}
	return err
}

// retryable reports a CONNACK code that says "not here, try elsewhere".
func retryable(version byte, code byte) bool {
	if version == mqttwire.V5 {
		switch code {
		case mqttwire.Code5ServerUnavailable, mqttwire.Code5ServerBusy, mqttwire.Code5UseAnotherServer:
			return true
		}
		return false
	}
	return code == mqttwire.Code3ServerUnavailable
}

// proxyHeader builds the PROXY header for mode (off, v1, v2). v2 carries the
// TLS TLVs (version, cipher, and the client certificate CN when one was
// verified) when TLS was terminated here.
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

// sslTLV describes the client's TLS session as PROXY v2's PP2_TYPE_SSL, as
// HAProxy does: the cipher by OpenSSL's name (cipherName).
func sslTLV(st *tls.ConnectionState) tlvparse.PP2SSL {
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1}
	ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsVersion(st.Version))})
	if len(st.PeerCertificates) > 0 {
		// Presented in this TLS session; on this connection too unless it
		// was resumed (HAProxy sends the same bits).
		ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS
		if !st.DidResume {
			ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
		}
	}
	if len(st.VerifiedChains) > 0 {
		ssl.Verify = 0 // zero: a certificate was presented and verified
		if cn := st.VerifiedChains[0][0].Subject.CommonName; cn != "" {
			// no CN: no sub-TLV rather than an empty one (HAProxy)
			ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(cn)})
		}
	}
	ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(cipherName(st.CipherSuite))})
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
