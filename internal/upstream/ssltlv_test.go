package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestSSLTLVClientBits: the SSL TLV's client bits say what HAProxy's do —
// a certificate in this TLS session (CERT_SESS), on this connection too
// unless it was resumed (CERT_CONN) — and a certificate without a CN gets
// no CN sub-TLV rather than an empty one.
func TestSSLTLVClientBits(t *testing.T) {
	leaf := testutil.NewCA(t).Client("dev1").TLS.Leaf
	if leaf == nil {
		t.Fatal("no parsed leaf")
	}
	noCN := *leaf
	noCN.Subject = pkix.Name{}
	for _, tc := range []struct {
		name    string
		cert    *x509.Certificate
		resumed bool
		client  uint8
		cn      string
	}{
		{"no certificate", nil, false, tlvparse.PP2_BITFIELD_CLIENT_SSL, ""},
		{"certificate", leaf, false, 0x07, "dev1"},
		{"resumed", leaf, true, 0x05, "dev1"},
		{"no CN", &noCN, false, 0x07, ""},
	} {
		st := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, DidResume: tc.resumed}
		if tc.cert != nil {
			st.PeerCertificates = []*x509.Certificate{tc.cert}
			st.VerifiedChains = [][]*x509.Certificate{{tc.cert}}
		}
		ssl := sslTLV(st)
		cn, hasCN := ssl.ClientCN()
		if ssl.Client != tc.client || cn != tc.cn || hasCN != (tc.cn != "") {
			t.Errorf("%s: client bits %#02x CN %q (sub-TLV %v), want %#02x %q", tc.name, ssl.Client, cn, hasCN, tc.client, tc.cn)
		}
	}
}

// TestSSLTLVCipherOpenSSLName: the cipher sub-TLV names the suite as
// OpenSSL (and so HAProxy) does, not as Go does; TLS 1.3's names are the
// same in both; an id without an OpenSSL name keeps Go's.
func TestSSLTLVCipherOpenSSLName(t *testing.T) {
	for _, tc := range []struct {
		version, suite uint16
		want           string
	}{
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256"},
		{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-ECDSA-CHACHA20-POLY1305"},
		{tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, "AES128-GCM-SHA256"},
		{tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384"},
		{tls.VersionTLS12, 0x00FF, "0x00FF"},
	} {
		got, ok := sslTLV(&tls.ConnectionState{Version: tc.version, CipherSuite: tc.suite}).SSLCipher()
		if !ok || got != tc.want {
			t.Errorf("suite 0x%04X: cipher sub-TLV %q (%v), want %q", tc.suite, got, ok, tc.want)
		}
	}
}
