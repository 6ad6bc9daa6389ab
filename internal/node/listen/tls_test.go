package listen

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqttv3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mqlb/mqlb/internal/testutil"
)

func TestTLSClientCertCN(t *testing.T) {
	ca := testutil.NewCA(t)
	srvTLS := ca.ServerConfig(t, tls.RequireAndVerifyClientCert)
	ts := startServer(t,
		Options{ID: "cn", Type: TypeTLS, TLS: srvTLS, UsernameFromCert: true},
		Options{ID: "keep", Type: TypeTLS, TLS: srvTLS})
	clientTLS := ca.ClientConfig(t, "device-7")

	c := dialTLS(t, ts.addr["cn"], clientTLS, nil)
	mustConnectV5(t, c, paho.Connect{ClientID: "a", Username: "claimed", Password: []byte("pw")})
	got := ts.rec.wait(t, "a")
	if got.Username != "device-7" || got.CN != "device-7" || !got.CertOK {
		t.Errorf("UsernameFromCert: username %q, identity %q/%v; want device-7 for both", got.Username, got.CN, got.CertOK)
	}

	c = dialTLS(t, ts.addr["keep"], clientTLS, nil)
	mustConnectV5(t, c, paho.Connect{ClientID: "b", Username: "alice"})
	got = ts.rec.wait(t, "b")
	if got.Username != "alice" {
		t.Errorf("without UsernameFromCert the username became %q, want alice", got.Username)
	}
	if got.CN != "device-7" || !got.CertOK {
		t.Errorf("CertIdentity = %q/%v, want device-7/true", got.CN, got.CertOK)
	}
}

func TestTLSBehindProxyHeader(t *testing.T) {
	ca := testutil.NewCA(t)
	ts := startServer(t, Options{ID: "pp-tls", Type: TypeTLS, TLS: ca.ServerConfig(t, tls.RequireAndVerifyClientCert),
		ProxyProtocol: true, Trusted: loopback, UsernameFromCert: true})
	c := dialTLS(t, ts.addr["pp-tls"], ca.ClientConfig(t, "meter-9"), headerFrom(2, "203.0.113.7:4242"))
	mustConnectV5(t, c, paho.Connect{ClientID: "m"})
	got := ts.rec.wait(t, "m")
	if got.Remote != "203.0.113.7:4242" || got.Username != "meter-9" {
		t.Errorf("remote %q username %q; want 203.0.113.7:4242 and meter-9", got.Remote, got.Username)
	}
}

func TestUsernameFromCertRefusesWithoutIdentity(t *testing.T) {
	ca := testutil.NewCA(t)
	ts := startServer(t, Options{ID: "optional", Type: TypeTLS,
		TLS: ca.ServerConfig(t, tls.VerifyClientCertIfGiven), UsernameFromCert: true})
	c := dialTLS(t, ts.addr["optional"], ca.ClientConfig(t, ""), nil)
	_, _, ack, err := connectV5(t, c, paho.Connect{ClientID: "nocert", Username: "alice"})
	if err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Errorf("v5 connack %+v err %v; want reason 0x87 Not authorized", ack, err)
	}
	if code := connectV311(t, "ssl://"+ts.addr["optional"], ca.ClientConfig(t, "")); code != 0x05 {
		t.Errorf("v3.1.1 return code %#x, want 0x05 not authorized", code)
	}
	if ts.rec.has("nocert") || ts.rec.has("v311") {
		t.Error("a client without a certificate got a session")
	}
}

// RequestClientCert takes any certificate without verifying it: no identity.
func TestUnverifiedCertificateIsNoIdentity(t *testing.T) {
	ca, other := testutil.NewCA(t), testutil.NewCA(t)
	ts := startServer(t, Options{ID: "unverified", Type: TypeTLS, TLS: ca.ServerConfig(t, tls.RequestClientCert)})
	forged := withCert(ca.ClientConfig(t, ""), other.Client("forged").TLS)
	c := dialTLS(t, ts.addr["unverified"], forged, nil)
	mustConnectV5(t, c, paho.Connect{ClientID: "f", Username: "alice"})
	if got := ts.rec.wait(t, "f"); got.CertOK || got.CN != "" || got.Username != "alice" {
		t.Errorf("identity %q/%v username %q; want none and alice", got.CN, got.CertOK, got.Username)
	}
}

func TestProxyV2SSLTLVIdentity(t *testing.T) {
	ts := startServer(t,
		Options{ID: "cn", Type: TypeTCP, ProxyProtocol: true, Trusted: loopback, UsernameFromCert: true},
		Options{ID: "keep", Type: TypeTCP, ProxyProtocol: true, Trusted: loopback})
	const certConn = tlvparse.PP2_BITFIELD_CLIENT_SSL | tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN

	c := dial(t, ts.addr["cn"])
	writeHeader(t, c, sslHeader(t, "device-42", certConn, 0))
	mustConnectV5(t, c, paho.Connect{ClientID: "d42", Username: "whoever"})
	if got := ts.rec.wait(t, "d42"); got.Username != "device-42" || got.Remote != "203.0.113.7:4242" {
		t.Errorf("username %q remote %q; want device-42 from 203.0.113.7:4242", got.Username, got.Remote)
	}

	c = dial(t, ts.addr["keep"])
	writeHeader(t, c, sslHeader(t, "device-43", certConn, 0))
	mustConnectV5(t, c, paho.Connect{ClientID: "d43", Username: "bob"})
	if got := ts.rec.wait(t, "d43"); got.Username != "bob" || got.CN != "device-43" || !got.CertOK {
		t.Errorf("username %q identity %q/%v; want bob and device-43/true", got.Username, got.CN, got.CertOK)
	}

	// A session HAProxy resumed: the certificate came earlier in it.
	c = dial(t, ts.addr["cn"])
	writeHeader(t, c, sslHeader(t, "device-47", tlvparse.PP2_BITFIELD_CLIENT_SSL|tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS, 0))
	mustConnectV5(t, c, paho.Connect{ClientID: "d47"})
	if got := ts.rec.wait(t, "d47"); got.Username != "device-47" {
		t.Errorf("resumed session (CERT_SESS): username %q, want device-47", got.Username)
	}

	for name, h := range map[string]*proxyproto.Header{
		"verify failed":  sslHeader(t, "device-44", certConn, 1),
		"no client cert": sslHeader(t, "device-45", tlvparse.PP2_BITFIELD_CLIENT_SSL, 0),
		"CN with U+0000": sslHeader(t, "device\x0046", certConn, 0), // no MQTT string can hold it
	} {
		c := dial(t, ts.addr["cn"])
		writeHeader(t, c, h)
		_, _, ack, err := connectV5(t, c, paho.Connect{ClientID: "x", Username: "device-44"})
		if err == nil || ack == nil || ack.ReasonCode != 0x87 {
			t.Errorf("%s: connack %+v err %v; want 0x87 (no identity)", name, ack, err)
		}
	}
}

// sslHeader builds a PROXY v2 header with a PP2_TYPE_SSL TLV carrying cn.
func sslHeader(t *testing.T, cn string, client uint8, verify uint32) *proxyproto.Header {
	t.Helper()
	ssl := tlvparse.PP2SSL{Client: client, Verify: verify, TLV: []proxyproto.TLV{
		{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")},
		{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(cn)},
	}}
	tlv, err := ssl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h := headerFrom(2, "203.0.113.7:4242")
	if err := h.SetTLVs([]proxyproto.TLV{tlv}); err != nil {
		t.Fatal(err)
	}
	return h
}

func withCert(cfg *tls.Config, cert tls.Certificate) *tls.Config {
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

// connectV311 connects an MQTT 3.1.1 client and returns the CONNACK return code.
func connectV311(t *testing.T, broker string, cfg *tls.Config) byte {
	t.Helper()
	o := mqttv3.NewClientOptions().AddBroker(broker).SetClientID("v311").SetUsername("alice").
		SetProtocolVersion(4).SetTLSConfig(cfg).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second)
	c := mqttv3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("v3.1.1 connect did not finish")
	}
	if tok.Error() == nil {
		c.Disconnect(0)
	}
	return tok.(*mqttv3.ConnectToken).ReturnCode()
}

// TestSetTLS: SetTLS gives a TLS listener the certificate new handshakes
// get, and refuses a plain listener and a change of client auth (which
// UsernameFromCert was checked against).
func TestSetTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	ts := startServer(t, Options{ID: "tls", Type: TypeTLS, TLS: ca.ServerConfig(t, tls.NoClientCert)}, Options{ID: "tcp", Type: TypeTCP})
	cn := func() string {
		c := dialTLS(t, ts.addr["tls"], &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}, nil)
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := cn(); got != "mqlb test server" {
		t.Fatalf("served %q at start", got)
	}
	l, _ := ts.srv.Listeners.Get("tls")
	rotated := &tls.Config{Certificates: []tls.Certificate{ca.Server("rotated").TLS}}
	if err := SetTLS(l, rotated); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "rotated" {
		t.Errorf("served %q after SetTLS, want rotated", got)
	}
	if err := SetTLS(l, ca.ServerConfig(t, tls.RequireAndVerifyClientCert)); err == nil || !strings.Contains(err.Error(), "client auth changes on restart only") {
		t.Errorf("client auth changed: %v", err)
	}
	plain, _ := ts.srv.Listeners.Get("tcp")
	if err := SetTLS(plain, rotated); err == nil || !strings.Contains(err.Error(), "does not do TLS") {
		t.Errorf("plain listener: %v", err)
	}
	if got := cn(); got != "rotated" {
		t.Errorf("served %q after the refused SetTLS, want rotated", got)
	}
}
