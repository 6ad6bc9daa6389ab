package config

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// servedCN handshakes with sc as a client configured by cc and returns the
// CN of the certificate the server presented.
func servedCN(t *testing.T, sc, cc *tls.Config) string {
	t.Helper()
	st, err := handshake(t, sc, cc)
	if err != nil {
		t.Fatalf("handshake (server name %q): %v", cc.ServerName, err)
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// TestCertificatesByKeyType: an RSA and an ECDSA certificate for the same
// names on one listener (HAProxy's crt with both, NGINX's two
// ssl_certificate lines): a client that takes only ECDSA gets the ECDSA
// one, one that takes only RSA the RSA one, any other the first.
func TestCertificatesByKeyType(t *testing.T) {
	ca := testutil.NewCA(t)
	rsaCert, ecCert := ca.ServerRSA("rsa"), ca.Server("ecdsa")
	sc, err := (&TLS{Certificates: []CertKey{{rsaCert.CertFile, rsaCert.KeyFile}, {ecCert.CertFile, ecCert.KeyFile}}}).ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	tls12 := func(suites ...uint16) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: suites}
	}
	for _, tc := range []struct {
		name   string
		client *tls.Config
		want   string
	}{
		{"ECDSA suites only", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), "ecdsa"},
		{"RSA suites only", tls12(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), "rsa"},
		{"TLS 1.3, any", &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}, "rsa"},
	} {
		if got := servedCN(t, sc, tc.client); got != tc.want {
			t.Errorf("client with %s got certificate %q, want %q", tc.name, got, tc.want)
		}
	}
}

// tlsDoc is the minimal load balancer config with tls on its listener.
func tlsDoc(tlsYAML string) string {
	return strings.Replace(minimal, "upstream: brokers\n", "upstream: brokers\n    tls:\n"+tlsYAML, 1)
}

// TestCertificatesErrors: every entry of tls.certificates needs a readable
// cert and key that make a pair, said at the entry's key and line, by the
// load balancer's config and the node's; certificates alone, without cert
// and key, are a valid listener.
func TestCertificatesErrors(t *testing.T) {
	ca := testutil.NewCA(t)
	a, b := ca.ServerFor("a", "a.example"), ca.ServerFor("b", "b.example")
	entry := func(cert, key string) string { return fmt.Sprintf("        - { cert: %q, key: %q }\n", cert, key) }
	for _, tc := range []struct {
		name, tls, want string
	}{
		{"certificates only", "      certificates:\n" + entry(a.CertFile, a.KeyFile) + entry(b.CertFile, b.KeyFile), ""},
		{"with cert and key", fmt.Sprintf("      cert: %q\n      key: %q\n      certificates:\n", a.CertFile, a.KeyFile) + entry(b.CertFile, b.KeyFile), ""},
		{"no key", "      certificates:\n" + entry(a.CertFile, a.KeyFile) + fmt.Sprintf("        - { cert: %q }\n", b.CertFile),
			"listeners[0].tls.certificates[1].key (line 9): a file is required"},
		{"not a pair", "      certificates:\n" + entry(a.CertFile, a.KeyFile) + entry(b.CertFile, a.KeyFile),
			"listeners[0].tls.certificates[1].cert (line 9): cannot load the certificate and key: tls: private key does not match public key (cert " +
				b.CertFile + ", key " + a.KeyFile + ")"},
		{"unreadable", "      certificates:\n" + entry(a.CertFile, "/nonexistent/a.key"),
			"listeners[0].tls.certificates[0].key (line 8): cannot read: open /nonexistent/a.key: no such file or directory"},
		{"key without cert", fmt.Sprintf("      key: %q\n      certificates:\n", a.KeyFile) + entry(b.CertFile, b.KeyFile),
			"listeners[0].tls.cert (line 6): a file is required"},
		{"none at all", "      client_auth: none\n", "listeners[0].tls.cert (line 6): a file is required"},
	} {
		_, err := Parse([]byte(tlsDoc(tc.tls)))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v\nwant %s", tc.name, err, tc.want)
		}
	}
	node := strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`, "  - address: \"127.0.0.1:0\"\n    tls:\n      certificates:\n"+
		entry(a.CertFile, a.KeyFile)+entry(b.CertFile, a.KeyFile), 1)
	if _, err := ParseNode([]byte(node)); err == nil || !strings.Contains(err.Error(), "listeners[0].tls.certificates[1].cert (line 9): cannot load") {
		t.Errorf("node: %v, want listeners[0].tls.certificates[1].cert (line 9): cannot load …", err)
	}
}
