package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestNodeReloadsCertificatesOnSIGHUP: an operator rotating a node's TLS
// certificate in place (cert-manager, Let's Encrypt) sends SIGHUP, and new
// handshakes get the new certificate while the MQTT connections made over
// the old one stay up; mqlb_tls_cert_expiry_seconds follows. A certificate
// file broken at the next SIGHUP is an error naming the listener's key and
// the file, and the node serves on with the certificate it had. Before,
// listeners were restart-only: the node kept the old certificate until a
// restart, which drops every client.
func TestNodeReloadsCertificatesOnSIGHUP(t *testing.T) {
	ca := testutil.NewCA(t)
	first, second := ca.Server("node-cert-first"), ca.Server("node-cert-second")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	install := func(is testutil.Issued) {
		t.Helper()
		for src, dst := range map[string]string{is.CertFile: certFile, is.KeyFile: keyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(first)
	file := writeFile(t, "node.yaml", fmt.Sprintf("node: { name: certs, data_dir: %q }\n"+
		"listeners:\n  - { name: tcp, address: \"127.0.0.1:0\" }\n  - { name: mqtts, type: tls, address: \"127.0.0.1:0\", tls: { cert: %q, key: %q } }\n"+
		"admin: { address: \"127.0.0.1:0\" }\n", filepath.Join(dir, "data"), certFile, keyFile))
	p := start(t, "node", "-c", file)
	addr := p.logged(t, 60*time.Second, `msg="node started".* listeners\.mqtts=(\S+)`)
	admin := p.logged(t, time.Second, `msg="node started".* admin=(\S+)`)

	// served connects an MQTT client over TLS and returns its connection
	// and the subject of the certificate it was given.
	served := func(id string) (*tls.Conn, string) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool})
		if err != nil {
			t.Fatalf("%s: handshake: %v\nlog:\n%s", id, err, p.stderr)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: id, KeepAlive: 60}))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if rp, err := mqttwire.ReadConnack(c, 4, nil); err != nil || rp.Code != 0 {
			t.Fatalf("%s: connack %d %v", id, rp.Code, err)
		}
		return c, c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	// up reports whether c still answers a PINGREQ.
	up := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{0xC0, 0}); err != nil {
			return false
		}
		b := make([]byte, 2)
		_, err := io.ReadFull(c, b)
		return err == nil && b[0] == 0xD0 && b[1] == 0
	}
	metrics := func() string {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	hangup := func(want string) {
		t.Helper()
		before := strings.Count(p.stderr.String(), want)
		p.cmd.Process.Signal(syscall.SIGHUP)
		testutil.Eventually(t, 10*time.Second, func() bool { return strings.Count(p.stderr.String(), want) > before },
			"log %q after SIGHUP:\n%s", want, p.stderr)
	}

	old, cn := served("before-rotation")
	if cn != "node-cert-first" {
		t.Fatalf("served %q at start, want node-cert-first", cn)
	}
	install(second)
	hangup("SIGHUP: config reloaded")
	if !strings.Contains(p.stderr.String(), "listeners=mqtts") {
		t.Errorf("the reload's log does not name the listener (listeners=mqtts):\n%s", p.stderr)
	}
	if _, cn := served("after-rotation"); cn != "node-cert-second" {
		t.Errorf("after SIGHUP a new handshake got %q, want the rotated node-cert-second; log:\n%s", cn, p.stderr)
	}
	if !up(old) {
		t.Error("the connection made over the old certificate did not survive the reload")
	}
	if m := metrics(); !strings.Contains(m, `subject="node-cert-second"`) || strings.Contains(m, `subject="node-cert-first"`) {
		t.Errorf("mqlb_tls_cert_expiry_seconds not of the rotated certificate:\n%s", regexp.MustCompile(`(?m)^mqlb_tls_cert_expiry_seconds.*$`).FindAllString(m, -1))
	}
	if strings.Contains(p.stderr.String(), "apply on restart only") {
		t.Errorf("the certificate reload was reported as restart-only:\n%s", p.stderr)
	}

	if err := os.WriteFile(certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup("SIGHUP: config not reloaded")
	if line := regexp.MustCompile(`(?m)^.*SIGHUP: config not reloaded.*$`).FindString(p.stderr.String()); !strings.Contains(line, "listeners[1].tls.cert") ||
		!strings.Contains(line, certFile) {
		t.Errorf("the error names not the listener's key and the file %s:\n%s", certFile, line)
	}
	if _, cn := served("after-broken"); cn != "node-cert-second" {
		t.Errorf("after a SIGHUP with a broken certificate file a new handshake got %q, want node-cert-second kept", cn)
	}
	if !up(old) {
		t.Error("the connection made at start did not survive the refused reload")
	}
}
