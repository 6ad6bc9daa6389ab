package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a throwaway certificate authority for TLS tests.
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	Pool    *x509.CertPool
	CertPEM []byte
	dir     string
	t       testing.TB
}

// NewCA makes a CA valid for an hour.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mqlb test CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, key: key, Pool: pool, dir: t.TempDir(), t: t,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issued is a certificate signed by a CA, in memory and as PEM files.
type Issued struct {
	TLS      tls.Certificate
	CertFile string
	KeyFile  string
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost.
func (ca *CA) Server(name string) Issued {
	return ca.issue(name, x509.ExtKeyUsageServerAuth)
}

// Client issues a client certificate whose subject CN is cn.
func (ca *CA) Client(cn string) Issued {
	return ca.issue(cn, x509.ExtKeyUsageClientAuth)
}

// Peer issues a certificate for both ends of a connection between equals
// (mesh routes), for 127.0.0.1, ::1 and localhost.
func (ca *CA) Peer(name string) Issued {
	return ca.issue(name, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// CAFile writes the CA certificate as PEM and returns its path.
func (ca *CA) CAFile() string {
	p := filepath.Join(ca.dir, "ca.pem")
	if err := os.WriteFile(p, ca.CertPEM, 0o600); err != nil {
		ca.t.Fatal(err)
	}
	return p
}

var serial atomic.Int64 // tests of one package may issue in parallel

// ServerConfig returns a server tls.Config with a loopback certificate that
// verifies client certificates against this CA according to auth.
func (ca *CA) ServerConfig(t testing.TB, auth tls.ClientAuthType) *tls.Config {
	t.Helper()
	return &tls.Config{
		Certificates: []tls.Certificate{ca.Server("mqlb test server").TLS},
		ClientCAs:    ca.Pool,
		ClientAuth:   auth,
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientConfig returns a client tls.Config trusting this CA, presenting a
// certificate with the given CN (none when cn is empty).
func (ca *CA) ClientConfig(t testing.TB, cn string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cn != "" {
		cfg.Certificates = []tls.Certificate{ca.Client(cn).TLS}
	}
	return cfg
}

func (ca *CA) issue(cn string, usage ...x509.ExtKeyUsage) Issued {
	ca.t.Helper()
	return ca.issueValid(cn, usage, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

func (ca *CA) issueValid(cn string, usage []x509.ExtKeyUsage, notBefore, notAfter time.Time) Issued {
	ca.t.Helper()
	return ca.issueSpec(spec{cn: cn, usage: usage, notBefore: notBefore, notAfter: notAfter,
		dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
}

// spec is what a certificate is issued for.
type spec struct {
	cn                  string
	usage               []x509.ExtKeyUsage
	notBefore, notAfter time.Time
	dns                 []string
	ips                 []net.IP
	rsa                 bool // an RSA key instead of ECDSA P-256
}

func (ca *CA) issueSpec(sp spec) Issued {
	t := ca.t
	t.Helper()
	pub, keyPEM := newKey(t, sp.rsa)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1) + 1),
		Subject:      pkix.Name{CommonName: sp.cn},
		NotBefore:    sp.notBefore,
		NotAfter:     sp.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  sp.usage,
		DNSNames:     sp.dns,
		IPAddresses:  sp.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	is := Issued{TLS: pair, CertFile: filepath.Join(ca.dir, sp.cn+".pem"), KeyFile: filepath.Join(ca.dir, sp.cn+".key")}
	if err := os.WriteFile(is.CertFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(is.KeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return is
}

// newKey makes a private key, ECDSA P-256 or RSA 2048, and returns its
// public half and its PEM.
func newKey(t testing.TB, useRSA bool) (crypto.PublicKey, []byte) {
	t.Helper()
	if useRSA {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return &key.PublicKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &key.PublicKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// ServerValid issues a server certificate valid from notBefore to notAfter
// (to test expired and not-yet-valid certificates).
func (ca *CA) ServerValid(name string, notBefore, notAfter time.Time) Issued {
	ca.t.Helper()
	return ca.issueValid(name, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, notBefore, notAfter)
}

// ServerFor issues a server certificate for the DNS names only (no
// addresses), to test choosing a certificate by SNI; cn names its files.
func (ca *CA) ServerFor(cn string, names ...string) Issued {
	ca.t.Helper()
	return ca.issueSpec(spec{cn: cn, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		notBefore: time.Now().Add(-time.Minute), notAfter: time.Now().Add(time.Hour), dns: names})
}

// ServerRSA is Server with an RSA key (Server's are ECDSA), to test a
// listener serving both kinds.
func (ca *CA) ServerRSA(name string) Issued {
	ca.t.Helper()
	return ca.issueSpec(spec{cn: name, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		notBefore: time.Now().Add(-time.Minute), notAfter: time.Now().Add(time.Hour),
		dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, rsa: true})
}
