// Package deploy_test checks the files in deploy/ against real things: the
// alert rules with promtool, the Grafana dashboard's queries against a real
// Prometheus scraping a running load balancer and node, and the packaging
// (manifests parse, shipped configs pass mqlb check).
package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lb"
	"github.com/mqlb/mqlb/internal/node"
	"github.com/mqlb/mqlb/internal/testutil"
)

func TestAlertRules(t *testing.T) {
	promtool := testutil.NeedCommand(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Debian's Prometheus lacks Kubernetes discovery: the scrape job is only parsed.
	if d := docs(t, "prometheus/scrape-kubernetes.yaml"); dig(d[0], "scrape_configs", 0, "authorization", "credentials_file") == nil {
		t.Error("scrape-kubernetes.yaml: the job sends no token")
	}
}

// TestDashboardQueriesReturnData runs a node, a load balancer in front of
// it (TLS and plain listeners) and Prometheus scraping both with the alert
// rules loaded, makes some traffic, and asks Prometheus every query of
// deploy/grafana/mqlb.json: each must return data.
func TestDashboardQueriesReturnData(t *testing.T) {
	bin := testutil.NeedCommand(t, "prometheus")
	n, lbAdmin, mqttAddr := startSystem(t)
	traffic(t, mqttAddr)
	prom := startPrometheus(t, bin, lbAdmin, n.AdminAddr())

	testutil.Eventually(t, 30*time.Second, func() bool {
		return len(query(t, prom, `up{job=~"mqlb-.*"} == 1`)) == 2
	}, "both targets scraped")
	rules := get(t, "http://"+prom+"/api/v1/rules")
	if got := strings.Count(rules, `"type":"alerting"`); got != 10 {
		t.Errorf("Prometheus loaded %d alert rules, want 10", got)
	}
	exprs := dashboardQueries(t)
	if len(exprs) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	for _, e := range exprs {
		testutil.Eventually(t, 30*time.Second, func() bool { return len(query(t, prom, e)) > 0 },
			"dashboard query returns no data: %s", e)
	}
	t.Logf("%d dashboard queries returned data", len(exprs))
}

// startSystem starts a single node and a load balancer with a plain and a
// TLS listener in front of it; it returns the node, the LB's admin address
// and its plain MQTT address.
func startSystem(t *testing.T) (*node.Node, string, string) {
	ca := testutil.NewCA(t)
	nodeCert, lbCert := ca.Server("node.test"), ca.Server("lb.test")
	ncfg := &config.Node{
		Node: config.NodeIdentity{Name: "n1", DataDir: t.TempDir()},
		Listeners: []config.NodeListener{{Name: "tcp", Address: "127.0.0.1:0"},
			{Name: "tls", Type: "tls", Address: "127.0.0.1:0", TLS: &config.TLS{Cert: nodeCert.CertFile, Key: nodeCert.KeyFile}}},
		Admin: config.Admin{Address: "127.0.0.1:0"},
	}
	ncfg.SetDefaults()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.New(ncfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	cfg, err := config.Parse([]byte(fmt.Sprintf(`listeners:
  - { name: mqtt, address: "127.0.0.1:0", upstream: nodes }
  - { name: mqtts, address: "127.0.0.1:0", upstream: nodes, tls: { cert: %q, key: %q } }
upstreams:
  nodes:
    health_check: { type: mqtt, interval: 200ms, timeout: 1s, rise: 1, fall: 2 }
    servers: [{ name: n1, address: %q }]
admin: { address: "127.0.0.1:0" }
access_log: { path: "off" }
limits: { shutdown_grace: 1s }
`, lbCert.CertFile, lbCert.KeyFile, n.ListenerAddr("tcp"))))
	if err != nil {
		t.Fatal(err)
	}
	l, err := lb.New(cfg, lb.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(get(t, "http://"+l.AdminAddr()+"/metrics"), `mqlb_server_up{server="n1",upstream="nodes"} 1`)
	}, "n1 up")
	return n, l.AdminAddr(), l.ListenerAddr("mqtt")
}

// connect311 is an MQTT 3.1.1 CONNECT with client id "c" (clean session).
var connect311 = []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'}

// traffic makes connections that close (durations, new connections), one
// that stays, and one refusal (not MQTT).
func traffic(t *testing.T, addr string) {
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for i := range 4 {
		c := dial()
		c.Write(connect311)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatalf("CONNACK %d: %v", i, err)
		}
		if i > 0 {
			c.Write([]byte{0xe0, 0}) // DISCONNECT
			c.Close()
		}
	}
	bad := dial()
	bad.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	io.Copy(io.Discard, bad)
}

var listeningOn = regexp.MustCompile(`msg="Listening on" address=(\S+)`)

// startPrometheus runs Prometheus scraping the LB and the node every second.
// It listens on 127.0.0.1:0 and its log says which port it got (the
// exporter-toolkit's "Listening on" line carries the bound address), so no
// port is picked beforehand.
func startPrometheus(t *testing.T, bin, lbAdmin, nodeAdmin string) string {
	dir := t.TempDir()
	rules, _ := filepath.Abs("prometheus/alerts.yaml")
	cfg := fmt.Sprintf(`global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: [%q]
scrape_configs:
  - job_name: mqlb-lb
    static_configs: [{ targets: [%q] }]
  - job_name: mqlb-node
    static_configs: [{ targets: [%q] }]
`, rules, lbAdmin, nodeAdmin)
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+file, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0", "--log.level=info")
	logs := new(testutil.SyncBuffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var addr string
	testutil.Eventually(t, 30*time.Second, func() bool {
		if m := listeningOn.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	}, "Prometheus never said where it listens:\n%s", logs)
	testutil.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "Prometheus ready")
	return addr
}

// dashboardQueries returns every query of the dashboard with its variables
// set as "All" and a rate interval of one minute.
func dashboardQueries(t *testing.T) []string {
	b, err := os.ReadFile("grafana/mqlb.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".+", "$node", ".+")
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, r.Replace(tg.Expr))
		}
	}
	return out
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// query runs an instant query and returns its result vector.
func query(t *testing.T, prom, expr string) []json.RawMessage {
	t.Helper()
	var r struct {
		Status string
		Error  string
		Data   struct{ Result []json.RawMessage }
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+prom+"/api/v1/query?query="+url.QueryEscape(expr))), &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != "success" {
		t.Fatalf("%s: %s", expr, r.Error)
	}
	return r.Data.Result
}
