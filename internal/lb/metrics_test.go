package lb

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestCertificateWarnings is issue 11 item 9: an expired or not-yet-valid
// server certificate is warned about at start and on reload, and its expiry
// is exported.
func TestCertificateWarnings(t *testing.T) {
	ca := testutil.NewCA(t)
	now := time.Now()
	expired := ca.ServerValid("expired.example", now.Add(-48*time.Hour), now.Add(-time.Hour))
	early := ca.ServerValid("early.example", now.Add(time.Hour), now.Add(48*time.Hour))
	b := testutil.StartMochi(t)
	file := filepath.Join(t.TempDir(), "mqlb.yaml")
	write := func(is testutil.Issued) {
		cfg := fmt.Sprintf("listeners:\n  - { name: mqtts, address: \"127.0.0.1:0\", upstream: u, tls: { cert: %q, key: %q } }\n"+
			"upstreams: { u: { servers: [{ name: s, address: %q }] } }\nadmin: { address: \"127.0.0.1:0\" }\naccess_log: { path: \"off\" }\n",
			is.CertFile, is.KeyFile, b.Addr)
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(expired)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := new(testutil.SyncBuffer)
	l := runLB(t, cfg, Options{File: file, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if !strings.Contains(logs.String(), `level=WARN msg="TLS certificate not valid now" problem="certificate \"expired.example\"`) {
		t.Errorf("no warning at start:\n%s", logs)
	}
	metrics := func() string { _, body := apiDo(t, "GET", "http://"+l.AdminAddr()+"/metrics", ""); return body }
	want := fmt.Sprintf(`mqlb_tls_cert_expiry_seconds{listener="mqtts",serial="%x",subject="expired.example"} %s`,
		expired.TLS.Leaf.SerialNumber.Bytes(), promFloat(expired.TLS.Leaf.NotAfter.Unix()))
	if m := metrics(); !strings.Contains(m, want) {
		t.Errorf("metrics lack %s", want)
	}
	write(early)
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `certificate \"early.example\"`) || !strings.Contains(logs.String(), "is not valid until") {
		t.Errorf("no warning on reload:\n%s", logs)
	}
	m := metrics()
	if !strings.Contains(m, `subject="early.example"`) || strings.Contains(m, `subject="expired.example"`) {
		t.Errorf("after reload the metric shows:\n%s", grep(m, "mqlb_tls_cert_expiry_seconds"))
	}
}

// promFloat formats an integer as the Prometheus text format does.
func promFloat(v int64) string { return strconv.FormatFloat(float64(v), 'g', -1, 64) }

func grep(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestOperatorMetrics is issue 12 item 5 on the load balancer.
func TestOperatorMetrics(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	c := openRaw(t, h.addr, "m-1")
	c.c.Close()
	h.write(h.yaml([]string{h.brokers[0].Addr}, harnessOpts{}))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	h.write("listeners: nonsense\n")
	if err := h.lb.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	metrics := func() string { _, body := apiDo(t, "GET", "http://"+h.admin+"/metrics", ""); return body }
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(metrics(), `mqlb_connection_duration_seconds_count{upstream="brokers"} 1`)
	}, "the closed connection's duration observed:\n%s", grep(metrics(), "duration"))
	m := metrics()
	for _, want := range []string{
		`mqlb_build_info{commit="`,
		`mqlb_reloads_total{result="ok"} 1`,
		`mqlb_reloads_total{result="error"} 1`,
		`mqlb_last_reload_success_timestamp_seconds `,
		`mqlb_server_connections_total{server="b0",upstream="brokers"} 1`,
		`mqlb_connection_duration_seconds_bucket{upstream="brokers",le="1"}`,
		`mqlb_connections_total{listener="mqtt",result="ok"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
