package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestServerConfigALPN: a client offering ALPN "mqtt" gets it; one offering
// only other protocols (a browser opening wss://: h2, http/1.1; AWS IoT's
// x-amzn-mqtt-ca) is served with no protocol, not refused; one offering
// none gets none.
func TestServerConfigALPN(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.Server("lb")
	sc, err := (&TLS{Cert: srv.CertFile, Key: srv.KeyFile, ClientAuth: "none"}).ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		offer []string
		want  string
	}{{[]string{"mqtt"}, "mqtt"}, {[]string{"h2", "http/1.1"}, ""}, {[]string{"x-amzn-mqtt-ca"}, ""}, {[]string{"http/1.1", "mqtt"}, "mqtt"}, {nil, ""}} {
		st, err := handshake(t, sc, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", NextProtos: tc.offer})
		if got := st.NegotiatedProtocol; err != nil || got != tc.want {
			t.Errorf("client offering %q: negotiated %q, err %v; want %q", tc.offer, got, err, tc.want)
		}
	}
}

// handshake runs one TLS handshake over a pipe and returns the client's
// view of the connection.
func handshake(t *testing.T, sc, cc *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(a, sc)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{0}) // TLS 1.3: the client's error arrives with data
		}
		errc <- err
	}()
	c := tls.Client(b, cc)
	if err := c.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	if err := <-errc; err != nil {
		return tls.ConnectionState{}, fmt.Errorf("server: %w", err)
	}
	return c.ConnectionState(), nil
}

// TestClientAuthNeedsCA: request, like require, needs a client_ca: a
// certificate nobody verifies identifies no one.
func TestClientAuthNeedsCA(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.Server("lb")
	for _, auth := range []string{"request", "require"} {
		y := strings.Replace(minimal, "upstream: brokers\n",
			fmt.Sprintf("upstream: brokers\n    tls: { cert: %s, key: %s, client_auth: %s }\n", srv.CertFile, srv.KeyFile, auth), 1)
		_, err := Parse([]byte(y))
		if want := "client_auth: " + auth + " needs a client_ca"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("client_auth %s without client_ca: %v, want %q", auth, err, want)
		}
		y = strings.Replace(y, "client_auth:", "client_ca: "+ca.CAFile()+", client_auth:", 1)
		if _, err := Parse([]byte(y)); err != nil {
			t.Errorf("client_auth %s with client_ca: %v", auth, err)
		}
	}
	// and a client_ca with client_auth none verifies nothing: refused too.
	for _, auth := range []string{"", ", client_auth: none"} {
		y := strings.Replace(minimal, "upstream: brokers\n",
			fmt.Sprintf("upstream: brokers\n    tls: { cert: %s, key: %s, client_ca: %s%s }\n", srv.CertFile, srv.KeyFile, ca.CAFile(), auth), 1)
		if _, err := Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), "client_auth is none") {
			t.Errorf("client_ca with client_auth %q: %v, want an error", auth, err)
		}
	}
}

// TestCiphers: tls.ciphers limits the TLS 1.2 suites a listener takes (a
// client offering none of them fails the handshake); unknown, insecure
// and TLS 1.3 names are refused with the key's path.
func TestCiphers(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.Server("lb")
	want := tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
	sc, err := (&TLS{Cert: srv.CertFile, Key: srv.KeyFile, Ciphers: []string{tls.CipherSuiteName(want)}}).ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	client := func(suites ...uint16) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: suites}
	}
	if _, err := handshake(t, sc, client(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)); err == nil {
		t.Errorf("a client offering only AES_128_GCM completed a handshake with a listener limited to %s", tls.CipherSuiteName(want))
	}
	if _, err := handshake(t, sc, client(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, want)); err != nil {
		t.Errorf("a client offering %s: %v", tls.CipherSuiteName(want), err)
	}
	for _, tc := range []struct{ cipher, msg string }{
		{"ECDHE-ECDSA-AES128-GCM-SHA256", "unknown cipher suite"},
		{"TLS_RSA_WITH_RC4_128_SHA", "is insecure"},
		{"TLS_AES_128_GCM_SHA256", "TLS 1.3 suite"},
	} {
		y := strings.Replace(minimal, "upstream: brokers\n",
			fmt.Sprintf("upstream: brokers\n    tls: { cert: %s, key: %s, ciphers: [%s] }\n", srv.CertFile, srv.KeyFile, tc.cipher), 1)
		if _, err := Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), "tls.ciphers") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ciphers [%s]: %v, want %q at tls.ciphers", tc.cipher, err, tc.msg)
		}
	}
}

// TestTLSReloaded: a reload takes a listener's certificate files, and its
// client CA when it verifies client certificates and the new config names
// one; client_auth, min_version and ciphers stay (restart only).
func TestTLSReloaded(t *testing.T) {
	run := &TLS{Cert: "a.pem", Key: "a.key", Certificates: []CertKey{{Cert: "b.pem", Key: "b.key"}}, ClientAuth: "require",
		ClientCA: "ca1.pem", MinVersion: "1.2", Ciphers: []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}}
	next := &TLS{Cert: "c.pem", Key: "c.key", Certificates: []CertKey{{Cert: "d.pem", Key: "d.key"}}, ClientAuth: "request",
		ClientCA: "ca2.pem", MinVersion: "1.3"}
	got := run.Reloaded(next)
	want := &TLS{Cert: "c.pem", Key: "c.key", Certificates: []CertKey{{Cert: "d.pem", Key: "d.key"}}, ClientAuth: "require",
		ClientCA: "ca2.pem", MinVersion: "1.2", Ciphers: run.Ciphers}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Reloaded:\n%+v\nwant\n%+v", got, want)
	}
	if next.Certificates[0].Cert = "e.pem"; got.Certificates[0].Cert != "d.pem" || run.Cert != "a.pem" {
		t.Error("Reloaded shares its certificates with next, or changed the running section")
	}
	// Without a client CA in next (client_auth none there: restart only),
	// or on a listener that does not verify client certificates, the
	// running one stays.
	if got := run.Reloaded(&TLS{Cert: "c.pem", Key: "c.key", ClientAuth: "none"}); got.ClientCA != "ca1.pem" {
		t.Errorf("client CA %q, want ca1.pem kept", got.ClientCA)
	}
	plain := &TLS{Cert: "a.pem", Key: "a.key", ClientAuth: "none"}
	if got := plain.Reloaded(&TLS{Cert: "a.pem", Key: "a.key", ClientAuth: "require", ClientCA: "ca2.pem"}); got.ClientCA != "" {
		t.Errorf("client CA %q taken by a listener that does not verify client certificates", got.ClientCA)
	}
}
