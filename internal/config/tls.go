package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
)

// ServerConfig builds the server side of a tls section (load balancer and
// node listeners alike): TLS 1.2 or 1.3 minimum, ALPN "mqtt" for clients
// that offer it (see acceptAnyALPN), and client certificates verified as
// client_auth says — request verifies one if given, require demands one.
//
// With several certificates crypto/tls chooses (Config.getCertificate)
// the first one valid for the client's SNI name, if it sent one, that the
// client can use (ClientHelloInfo.SupportsCertificate: of an RSA and an
// ECDSA certificate for the same names, each client gets one it takes),
// and the first one when none is.
func (t *TLS) ServerConfig() (*tls.Config, error) {
	var certs []tls.Certificate
	for _, c := range t.pairs() {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", c.Cert, err)
		}
		certs = append(certs, cert)
	}
	var err error
	cfg := &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12, NextProtos: []string{"mqtt"}}
	if t.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if len(t.Ciphers) > 0 {
		if cfg.CipherSuites, err = cipherSuites(t.Ciphers); err != nil {
			return nil, err
		}
	}
	if t.ClientCA != "" {
		if cfg.ClientCAs, err = LoadCertPool(t.ClientCA); err != nil {
			return nil, err
		}
	}
	switch t.ClientAuth {
	case "request":
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case "require":
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	acceptAnyALPN(cfg)
	return cfg, nil
}

// acceptAnyALPN makes cfg answer ALPN "mqtt" to a client that offers it
// and negotiate no protocol with one that offers only others, instead of
// Go's refusal (alert no_application_protocol) — a browser opening wss://
// offers h2 and http/1.1, and AWS IoT's clients x-amzn-mqtt-ca. HAProxy
// and NGINX without an alpn setting never refuse a client over ALPN.
func acceptAnyALPN(cfg *tls.Config) {
	none := cfg.Clone()
	none.NextProtos = nil
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if len(hello.SupportedProtos) == 0 || slices.Contains(hello.SupportedProtos, cfg.NextProtos[0]) {
			return nil, nil
		}
		return none, nil
	}
}

// LoadCertPool reads PEM certificates from file into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates in %s", file)
	}
	return pool, nil
}

// pairs lists the certificates t serves, the default first: cert and key
// when either is set, then certificates.
func (t *TLS) pairs() []CertKey {
	var out []CertKey
	if t.Cert != "" || t.Key != "" {
		out = append(out, CertKey{Cert: t.Cert, Key: t.Key})
	}
	return append(out, t.Certificates...)
}

// Reloaded is t, the tls section of a running listener, with what a reload
// applies of next, the same listener's in the new config: the certificate
// and key files (cert, key, certificates) and, when t verifies client
// certificates and next names one, the client CA file. Its other keys
// (client_auth, min_version, ciphers) stay t's: they change on restart
// only. t is not changed.
func (t *TLS) Reloaded(next *TLS) *TLS {
	r := *t
	r.Cert, r.Key, r.Certificates = next.Cert, next.Key, slices.Clone(next.Certificates)
	if (t.ClientAuth == "request" || t.ClientAuth == "require") && next.ClientCA != "" {
		r.ClientCA = next.ClientCA
	}
	return &r
}

// CertCount is how many certificates t serves; with more than one, a
// client's SNI name chooses.
func (t *TLS) CertCount() int { return len(t.pairs()) }

func (ck *check) tls(p string, t *TLS) {
	if t.Cert != "" || t.Key != "" || len(t.Certificates) == 0 {
		ck.certKey(p, CertKey{Cert: t.Cert, Key: t.Key})
	}
	for i, c := range t.Certificates {
		ck.certKey(fmt.Sprintf("%s.certificates[%d]", p, i), c)
	}
	ck.oneOf(p+".client_auth", t.ClientAuth, "none", "request", "require")
	ck.oneOf(p+".min_version", t.MinVersion, "1.2", "1.3")
	if _, err := cipherSuites(t.Ciphers); err != nil {
		ck.errorf(p+".ciphers", "%v", err)
	} else if len(t.Ciphers) > 0 && t.MinVersion == "1.3" {
		ck.errorf(p+".ciphers", "TLS 1.2 suites, but min_version is 1.3 (whose suites are not configurable)")
	}
	if t.ClientCA != "" {
		if _, err := LoadCertPool(t.ClientCA); err != nil {
			ck.errorf(p+".client_ca", "%v", err)
		} else if t.ClientAuth == "" || t.ClientAuth == "none" {
			// A CA that verifies nothing: clients are never asked for a
			// certificate, which is rarely what setting one meant.
			ck.errorf(p+".client_ca", "set, but client_auth is none, so no client certificate is asked for: "+
				"set client_auth to request or require, or remove client_ca")
		}
	} else if t.ClientAuth == "require" || t.ClientAuth == "request" {
		ck.errorf(p+".client_ca", "client_auth: %s needs a client_ca to verify certificates against", t.ClientAuth)
	}
}

// certKey checks that a certificate and its key (at p.cert, p.key) are
// readable and a pair: a file that cannot be read is that one error.
func (ck *check) certKey(p string, c CertKey) {
	cert, key := ck.readable(p+".cert", c.Cert), ck.readable(p+".key", c.Key)
	if cert && key {
		if _, err := tls.LoadX509KeyPair(c.Cert, c.Key); err != nil {
			ck.errorf(p+".cert", "cannot load the certificate and key: %v (cert %s, key %s)", err, c.Cert, c.Key)
		}
	}
}

// proxyAccept checks an inbound PROXY protocol section.
func (ck *check) proxyAccept(p string, pp *ProxyAccept) {
	if pp == nil || !pp.Accept {
		return
	}
	if len(pp.Trusted) == 0 {
		ck.errorf(p+".trusted", "list the CIDRs allowed to send PROXY headers")
	} else if _, err := ParsePrefixes(pp.Trusted); err != nil {
		ck.errorf(p+".trusted", "%v", err)
	}
	ck.positive(p+".timeout", pp.Timeout)
}

// cipherSuites maps TLS 1.2 cipher suite names (IANA, as crypto/tls names
// them) to their ids. Suites Go deems insecure and TLS 1.3's (which Go does
// not let one choose) are refused.
func cipherSuites(names []string) ([]uint16, error) {
	var ids []uint16
	for _, name := range names {
		i := slices.IndexFunc(tls.CipherSuites(), func(c *tls.CipherSuite) bool { return c.Name == name })
		switch {
		case i < 0 && slices.ContainsFunc(tls.InsecureCipherSuites(), func(c *tls.CipherSuite) bool { return c.Name == name }):
			return nil, fmt.Errorf("%s is insecure (crypto/tls InsecureCipherSuites)", name)
		case i < 0:
			return nil, fmt.Errorf("unknown cipher suite %q; want IANA names such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", name)
		}
		c := tls.CipherSuites()[i]
		if !slices.Contains(c.SupportedVersions, tls.VersionTLS12) {
			return nil, fmt.Errorf("%s is a TLS 1.3 suite: Go does not let TLS 1.3's be chosen", name)
		}
		ids = append(ids, c.ID)
	}
	return ids, nil
}
