package config

import (
	"crypto/tls"
	"fmt"
	"regexp"
)

// MeshTLS encrypts and authenticates the routes between nodes (and the
// connections to an external NATS with mesh.url): every node presents cert
// and accepts only peers whose certificate ca signed, in both directions.
type MeshTLS struct {
	Cert string `yaml:"cert"` // this node's certificate, for server and client use
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"` // the CA that signs every node's certificate
}

// minMeshToken is the shortest mesh.token accepted: 128 bits as hex.
const minMeshToken = 32

// Config builds the TLS configuration of a route, used both to accept and
// to dial one: peers must present a certificate signed by the CA.
func (t *MeshTLS) Config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("mesh.tls: %w", err)
	}
	pool, err := LoadCertPool(t.CA)
	if err != nil {
		return nil, fmt.Errorf("mesh.tls.ca: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// meshSecurity checks mesh.token and mesh.tls.
func (ck *check) meshSecurity(m *Mesh) {
	if m.Token != "" && len(m.Token) < minMeshToken {
		ck.errorf("mesh.token", "want at least %d characters (mqlb up and `openssl rand -hex 16` make one), got %d", minMeshToken, len(m.Token))
	}
	t := m.TLS
	if t == nil {
		return
	}
	cert, key, ca := ck.readable("mesh.tls.cert", t.Cert), ck.readable("mesh.tls.key", t.Key), ck.readable("mesh.tls.ca", t.CA)
	if cert && key && ca { // a file that cannot be read is that one error
		if _, err := t.Config(); err != nil {
			ck.errorf("mesh.tls", "%v", err)
		}
	}
}

// security describes how the mesh is protected, for summaries: never the
// token itself.
func (m Mesh) security() string {
	switch {
	case m.Listen == "" && m.URL == "":
		return "no routes"
	case m.Token != "" && m.TLS != nil:
		return "token set, TLS"
	case m.Token != "":
		return "token set, no TLS"
	case m.TLS != nil:
		return "TLS, no token"
	case m.URL != "":
		return "no token or TLS of its own"
	}
	return "routes OPEN (no mesh.token)"
}

var userinfo = regexp.MustCompile(`://[^/@\s]*@`)

// hideUserinfo replaces credentials in URLs (nats-route://user:pass@host).
func hideUserinfo(s string) string { return userinfo.ReplaceAllString(s, "://***@") }
