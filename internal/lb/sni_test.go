package lb

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// sniListener is an extra TLS listener serving first (as tls.cert and
// tls.key), then more (as tls.certificates).
func sniListener(first testutil.Issued, more ...testutil.Issued) string {
	s := fmt.Sprintf("  - name: mqtts\n    address: \"127.0.0.1:0\"\n    upstream: brokers\n    tls:\n      cert: %q\n      key: %q\n      certificates:\n",
		first.CertFile, first.KeyFile)
	for _, m := range more {
		s += fmt.Sprintf("        - { cert: %q, key: %q }\n", m.CertFile, m.KeyFile)
	}
	return s
}

// dialServed opens a TLS connection to addr sending serverName as SNI
// (none when empty), runs an MQTT CONNECT through it to a broker, and
// returns the CN of the certificate the load balancer presented. With
// verify, the certificate must be valid for serverName; without, as for no
// name or one no certificate covers, it is not checked.
func dialServed(t *testing.T, addr, serverName string, verify bool, ca *testutil.CA) string {
	t.Helper()
	cc := &tls.Config{ServerName: serverName, RootCAs: ca.Pool, InsecureSkipVerify: !verify}
	c, err := tls.Dial("tcp", addr, cc)
	if err != nil {
		t.Fatalf("server name %q: %v", serverName, err)
	}
	defer c.Close()
	id := "sni-" + serverName
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: id, KeepAlive: 30}))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rp, err := mqttwire.ReadConnack(c, 4, nil); err != nil || rp.Code != 0 {
		t.Fatalf("server name %q: connack %d %v", serverName, rp.Code, err)
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestListenerCertificatesBySNI: a TLS listener with two certificates for
// different names (tls.cert/key and tls.certificates) serves each client
// the one for the name it sends as SNI, and the first (cert/key) to a
// client sending no name or one no certificate covers; a reload that
// changes the list changes what new clients get.
func TestListenerCertificatesBySNI(t *testing.T) {
	ca := testutil.NewCA(t)
	a, b := ca.ServerFor("cert-a", "a.example"), ca.ServerFor("cert-b", "b.example")
	opts := harnessOpts{brokers: 1, listeners: sniListener(a, b)}
	h := newHarness(t, opts)
	addr := h.lb.ListenerAddr("mqtts")
	for _, tc := range []struct {
		name   string
		verify bool
		want   string
	}{{"a.example", true, "cert-a"}, {"b.example", true, "cert-b"}, {"", false, "cert-a"}, {"c.example", false, "cert-a"}} {
		if got := dialServed(t, addr, tc.name, tc.verify, ca); got != tc.want {
			t.Errorf("server name %q: served %q, want %q", tc.name, got, tc.want)
		}
	}
	// Reload with b first: the default changes; a is still served by name.
	opts.listeners = sniListener(b, a)
	h.write(h.yaml([]string{h.brokers[0].Addr}, opts))
	if err := h.lb.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := dialServed(t, addr, "", false, ca); got != "cert-b" {
		t.Errorf("after reload, no server name: served %q, want cert-b", got)
	}
	if got := dialServed(t, addr, "a.example", true, ca); got != "cert-a" {
		t.Errorf("after reload, a.example: served %q, want cert-a", got)
	}
}
