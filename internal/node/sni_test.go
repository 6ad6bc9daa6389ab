package node

import (
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestListenerCertificatesBySNI: a node's TLS listener with tls.cert/key
// and tls.certificates serves the certificate for the client's SNI name,
// the first to a client sending none, and exports every one's expiry.
func TestListenerCertificatesBySNI(t *testing.T) {
	ca := testutil.NewCA(t)
	a, b := ca.ServerFor("node-a", "a.example"), ca.ServerFor("node-b", "b.example")
	cfg := nodeConfig("sni", 0, t.TempDir())
	cfg.Mesh.Listen = ""
	cfg.Listeners = append(cfg.Listeners, config.NodeListener{Name: "tls", Type: "tls", Address: "127.0.0.1:0",
		TLS: &config.TLS{Cert: a.CertFile, Key: a.KeyFile, Certificates: []config.CertKey{{Cert: b.CertFile, Key: b.KeyFile}}}})
	cfg.SetDefaults()
	n, _ := startLogged(t, cfg, slog.LevelWarn)
	for _, tc := range []struct{ name, want string }{{"a.example", "node-a"}, {"b.example", "node-b"}, {"", "node-a"}} {
		c, err := tls.Dial("tcp", n.ListenerAddr("tls"), &tls.Config{ServerName: tc.name, RootCAs: ca.Pool, InsecureSkipVerify: tc.name == ""})
		if err != nil {
			t.Fatalf("server name %q: %v", tc.name, err)
		}
		c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: "sni" + tc.name, KeepAlive: 30}))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if rp, err := mqttwire.ReadConnack(c, 4, nil); err != nil || rp.Code != 0 {
			t.Fatalf("server name %q: connack %d %v", tc.name, rp.Code, err)
		}
		if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tc.want {
			t.Errorf("server name %q: served %q, want %q", tc.name, got, tc.want)
		}
		c.Close()
	}
	_, body := get(t, "http://"+n.AdminAddr()+"/metrics", "")
	for _, cn := range []string{"node-a", "node-b"} {
		if !strings.Contains(body, `subject="`+cn+`"`) {
			t.Errorf("mqlb_tls_cert_expiry_seconds lacks %s", cn)
		}
	}
}
