package node

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestReloadTLSFiles: Reload applies new paths of a TLS listener's
// certificate files (tls.cert/key, tls.certificates) and, on a listener
// verifying client certificates, of its client CA, to the handshakes that
// follow, without closing the connections made; it warns about the new
// certificates as at start and exports their expiry; other listener
// changes stay restart-only (with the warning), and a certificate that
// cannot be loaded refuses the reload and keeps the old one.
func TestReloadTLSFiles(t *testing.T) {
	ca, clientsA, clientsB := testutil.NewCA(t), testutil.NewCA(t), testutil.NewCA(t)
	a, b, sni := ca.Server("cert-a"), ca.Server("cert-b"), ca.ServerFor("cert-c", "c.example")
	expired := ca.ServerValid("cert-expired", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	cfg := nodeConfig("tlsreload", 0, t.TempDir())
	cfg.Mesh.Listen = ""
	cfg.Listeners = append(cfg.Listeners,
		config.NodeListener{Name: "tls", Type: "tls", Address: "127.0.0.1:0", TLS: &config.TLS{Cert: a.CertFile, Key: a.KeyFile}},
		config.NodeListener{Name: "mtls", Type: "tls", Address: "127.0.0.1:0",
			TLS: &config.TLS{Cert: a.CertFile, Key: a.KeyFile, ClientAuth: "require", ClientCA: clientsA.CAFile()}})
	cfg.SetDefaults()
	n, logs := startLogged(t, cfg, slog.LevelInfo)

	// connect makes an MQTT connection over TLS to listener and returns it
	// and the CN of the certificate it was served, or the error.
	connect := func(listener string, tc *tls.Config) (*tls.Conn, string, error) {
		conn, err := tls.Dial("tcp", n.ListenerAddr(listener), tc)
		if err != nil {
			return nil, "", err
		}
		t.Cleanup(func() { conn.Close() })
		conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: "c" + randomHex(4), KeepAlive: 60}))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := mqttwire.ReadConnack(conn, 4, nil); err != nil {
			return nil, "", err // a client certificate refused in TLS 1.3 is told after the handshake
		}
		return conn, conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	served := func(listener string, tc *tls.Config) string {
		t.Helper()
		_, cn, err := connect(listener, tc)
		if err != nil {
			t.Fatalf("%s: %v", listener, err)
		}
		return cn
	}
	withClientCert := func(clients *testutil.CA) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{clients.Client("device").TLS}}
	}
	pings := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 2)
		if _, err := c.Write([]byte{0xC0, 0}); err != nil {
			return false
		}
		_, err := io.ReadFull(c, b)
		return err == nil && b[0] == 0xD0
	}
	// reload applies cfg changed by edit to its copy (the listeners' too).
	reload := func(edit func(*config.Node)) error {
		next := *cfg
		next.Listeners = nil
		for _, l := range cfg.Listeners {
			if l.TLS != nil {
				own := *l.TLS
				l.TLS = &own
			}
			next.Listeners = append(next.Listeners, l)
		}
		edit(&next)
		return n.Reload(&next)
	}
	old, _, err := connect("tls", &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	oldMutual, _, err := connect("mtls", withClientCert(clientsA))
	if err != nil {
		t.Fatal(err)
	}

	err = reload(func(c *config.Node) {
		c.Listeners[1].TLS.Cert, c.Listeners[1].TLS.Key = b.CertFile, b.KeyFile
		c.Listeners[2].TLS.ClientCA = clientsB.CAFile()
	})
	if err != nil {
		t.Fatal(err)
	}
	if cn := served("tls", &tls.Config{RootCAs: ca.Pool}); cn != "cert-b" {
		t.Errorf("tls.cert changed: served %q, want cert-b", cn)
	}
	if _, _, err := connect("mtls", withClientCert(clientsB)); err != nil {
		t.Errorf("a client certificate of the new client_ca refused: %v", err)
	}
	if _, _, err := connect("mtls", withClientCert(clientsA)); err == nil {
		t.Error("a client certificate of the replaced client_ca accepted")
	}
	if !pings(old) || !pings(oldMutual) {
		t.Error("connections made before the reload did not stay up")
	}
	if strings.Contains(logs.String(), "apply on restart only") {
		t.Errorf("new certificate paths reported as restart-only:\n%s", logs)
	}
	if _, body := get(t, "http://"+n.AdminAddr()+"/metrics", ""); !strings.Contains(body, `listener="tls",node="n1",serial="`) ||
		!strings.Contains(body, `subject="cert-b"`) {
		t.Errorf("mqlb_tls_cert_expiry_seconds not of cert-b:\n%s", regexp.MustCompile(`(?m)^mqlb_tls_cert_expiry_seconds.*$`).FindAllString(body, -1))
	}

	// An expired certificate is served, and warned about as at start; a
	// tls.certificates entry added is chosen by SNI.
	err = reload(func(c *config.Node) {
		c.Listeners[1].TLS.Cert, c.Listeners[1].TLS.Key = expired.CertFile, expired.KeyFile
		c.Listeners[1].TLS.Certificates = []config.CertKey{{Cert: sni.CertFile, Key: sni.KeyFile}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if cn := served("tls", &tls.Config{RootCAs: ca.Pool, ServerName: "c.example"}); cn != "cert-c" {
		t.Errorf("tls.certificates entry added: served %q to c.example, want cert-c", cn)
	}
	if cn := served("tls", &tls.Config{InsecureSkipVerify: true}); cn != "cert-expired" {
		t.Errorf("served %q by default, want cert-expired", cn)
	}
	if !strings.Contains(logs.String(), `msg="TLS certificate not valid now"`) || !strings.Contains(logs.String(), `certificate \"cert-expired\"`) {
		t.Errorf("no warning about the expired certificate reloaded:\n%s", logs)
	}

	// Another change to the listener is restart-only, and said so; its
	// certificate applies.
	err = reload(func(c *config.Node) {
		c.Listeners[1].Address = "127.0.0.1:1"
		c.Listeners[1].TLS.Cert, c.Listeners[1].TLS.Key = a.CertFile, a.KeyFile
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="config changes that apply on restart only: the node runs with the old values" node=n1 changed=listeners`) {
		t.Errorf("address change not reported as restart-only:\n%s", logs)
	}
	if cn := served("tls", &tls.Config{RootCAs: ca.Pool}); cn != "cert-a" {
		t.Errorf("served %q, want cert-a", cn)
	}

	// A certificate that cannot be loaded: refused, the old one served.
	broken := filepath.Join(t.TempDir(), "broken.pem")
	if err := os.WriteFile(broken, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = reload(func(c *config.Node) { c.Listeners[1].TLS.Cert = broken })
	if err == nil || !strings.Contains(err.Error(), "listeners[1].tls.cert") || !strings.Contains(err.Error(), broken) {
		t.Errorf("reload with a broken certificate: %v, want an error naming listeners[1].tls.cert and %s", err, broken)
	}
	if cn := served("tls", &tls.Config{RootCAs: ca.Pool}); cn != "cert-a" {
		t.Errorf("after a refused reload served %q, want cert-a kept", cn)
	}
	if !pings(old) || !pings(oldMutual) {
		t.Error("connections made at start did not stay up")
	}
}
