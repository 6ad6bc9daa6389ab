package node

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestCertificateStandsInOnlyWithUsernameFromCert: a verified client
// certificate stands in for the password only on a listener with
// username_from_cert, where its CN is the user name (VerneMQ's
// use_identity_as_username, EMQX's peer_cert_as_username: explicit opt-ins).
// On any other listener — TLS with client_auth request, or PROXY v2 with
// the load balancer's SSL TLV — the password and the stores decide, as for
// any client, whatever the certificate's CN: a password revoked or a user
// denied in a store stops a certificate holder too. The node let in a user
// name equal to the verified CN with no or a wrong password on every
// listener.
func TestCertificateStandsInOnlyWithUsernameFromCert(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.Server("node")
	users := usersFile(t, "alice", "right")
	no := false
	pp := &config.ProxyAccept{Accept: true, Trusted: []string{"127.0.0.1/32"}}
	withTLS := func() *config.TLS {
		return &config.TLS{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.CAFile(), ClientAuth: "request"}
	}
	n := soloNode(t, func(c *config.Node) {
		c.Auth = config.NodeAuth{AllowAnonymous: &no, UsersFile: users}
		c.Listeners = append(c.Listeners,
			config.NodeListener{Name: "tls", Type: "tls", Address: "127.0.0.1:0", TLS: withTLS()},
			config.NodeListener{Name: "tls-cn", Type: "tls", Address: "127.0.0.1:0", TLS: withTLS(), UsernameFromCert: true},
			config.NodeListener{Name: "pp", Type: "tcp", Address: "127.0.0.1:0", ProxyProtocol: pp},
			config.NodeListener{Name: "pp-cn", Type: "tcp", Address: "127.0.0.1:0", ProxyProtocol: pp, UsernameFromCert: true})
		c.SetDefaults()
	})
	dial := func(listener string) net.Conn {
		if listener == "tls" || listener == "tls-cn" {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", n.ListenerAddr(listener), ca.ClientConfig(t, "alice"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetDeadline(time.Now().Add(waitFor))
			return c
		}
		c := rawDial(t, n.ListenerAddr(listener))
		if _, err := sslTLVHeader(t, "alice").WriteTo(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		listener, password string
		want               byte
	}{
		{"tls", "", 0x86},
		{"tls", "wrong", 0x86},
		{"tls", "right", 0},
		{"pp", "", 0x86},
		{"pp", "wrong", 0x86},
		{"pp", "right", 0},
		{"tls-cn", "", 0},
		{"tls-cn", "wrong", 0}, // the certificate is the credential; the password is not looked at
		{"pp-cn", "", 0},
	} {
		c := dial(tc.listener)
		write(t, c, rawConnect(mqttwire.V5, "cert-"+tc.listener, "alice", tc.password))
		if code := readConnack(t, c, mqttwire.V5); code != tc.want {
			t.Errorf("%s, certificate CN alice, user name alice, password %q: CONNACK 0x%02x, want 0x%02x",
				tc.listener, tc.password, code, tc.want)
		}
		c.Close()
	}
}

// sslTLVHeader is a PROXY v2 header from a TLS-terminating load balancer
// whose client presented a verified certificate with this CN.
func sslTLVHeader(t *testing.T, cn string) *proxyproto.Header {
	t.Helper()
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN,
		TLV: []proxyproto.TLV{{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(cn)}}}
	tlv, err := ssl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.7:4242")),
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883})
	if err := h.SetTLVs([]proxyproto.TLV{tlv}); err != nil {
		t.Fatal(err)
	}
	return h
}
