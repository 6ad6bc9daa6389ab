package node

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestCertificateWarningAndMetrics is issue 11 item 9 on a node: an expired
// server certificate is warned about at start and its expiry exported, next
// to mqlb_build_info and mqlb_node_store_available.
func TestCertificateWarningAndMetrics(t *testing.T) {
	ca := testutil.NewCA(t)
	expired := ca.ServerValid("node-expired", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	cfg := nodeConfig("certs", 0, t.TempDir())
	cfg.Mesh.Listen = ""
	cfg.Listeners = append(cfg.Listeners, config.NodeListener{Name: "tls", Type: "tls", Address: "127.0.0.1:0",
		TLS: &config.TLS{Cert: expired.CertFile, Key: expired.KeyFile}})
	cfg.SetDefaults()
	logs := new(testutil.SyncBuffer)
	n, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if !strings.Contains(logs.String(), `msg="TLS certificate not valid now"`) || !strings.Contains(logs.String(), `certificate \"node-expired\"`) {
		t.Errorf("no warning:\n%s", logs)
	}
	_, body := get(t, "http://"+n.AdminAddr()+"/metrics", "")
	for _, want := range []string{
		`mqlb_tls_cert_expiry_seconds{listener="tls",node="n1",serial="`,
		`mqlb_build_info{commit="`,
		`mqlb_node_store_available{node="n1"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
