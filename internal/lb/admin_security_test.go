package lb

import (
	"context"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// request sends method url with extra headers ("Host" sets the Host header).
func request(t *testing.T, method, url string, hdr map[string]string) (int, string) {
	t.Helper()
	return testutil.HTTPWith(t, method, url, "", hdr)
}

// TestAdminCrossSite is issue 11 item 5: with no token (the default) a page
// in the operator's browser could drain, disable or reload, and a rebinding
// Host could read the API.
func TestAdminCrossSite(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	base := "http://" + h.admin
	drain := base + "/api/v1/upstreams/brokers/servers/b0/drain"
	if code, _ := request(t, "POST", drain, map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}); code != 403 {
		t.Errorf("drain from a foreign origin: %d, want 403", code)
	}
	if code, _ := request(t, "POST", base+"/-/reload", map[string]string{"Origin": "http://evil.example", "Host": "evil.example"}); code != 421 {
		t.Errorf("reload with a foreign Origin and Host: %d, want 421", code)
	}
	if code, _ := request(t, "GET", base+"/api/v1/upstreams", map[string]string{"Host": "rebind.evil.example"}); code != 421 {
		t.Errorf("GET with a rebinding Host: %d, want 421", code)
	}
	if s := h.lb.Upstreams().Get("brokers").Server("b0").State(); s.String() != "up" {
		t.Fatalf("b0 is %s after refused requests", s)
	}
	// What the dashboard's fetch sends from its own page passes.
	if code, body := request(t, "POST", drain, map[string]string{"Origin": base, "Sec-Fetch-Site": "same-origin"}); code != 200 {
		t.Errorf("drain from the dashboard: %d %s", code, body)
	}
	if code, _ := request(t, "GET", "http://localhost:"+portOf(h.admin)+"/healthz", nil); code != 200 {
		t.Errorf("Host localhost: %d", code)
	}
}

func portOf(hostport string) string { return hostport[strings.LastIndexByte(hostport, ':')+1:] }

func TestAdminAllowedHosts(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, top: "admin: { address: \"127.0.0.1:0\", allowed_hosts: [mqlb.example.net] }\n"})
	if code, _ := request(t, "GET", "http://"+h.admin+"/api/v1/upstreams", map[string]string{"Host": "mqlb.example.net:9090"}); code != 200 {
		t.Errorf("an allowed Host: %d", code)
	}
}

func TestAdminBearerCaseInsensitive(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, top: "admin: { address: \"127.0.0.1:0\", token: s3cret }\n"})
	if code, _ := request(t, "GET", "http://"+h.admin+"/api/v1/upstreams", map[string]string{"Authorization": "bearer s3cret"}); code != 200 {
		t.Errorf("lower-case bearer: %d", code)
	}
}

// TestAdminBeyondLoopbackNeedsToken: the config check refuses it, and so
// does New for a config built in code.
func TestAdminBeyondLoopbackNeedsToken(t *testing.T) {
	yaml := "listeners: [{ address: \"127.0.0.1:0\", upstream: u }]\nupstreams: { u: { servers: [{ address: \"127.0.0.1:1\" }] } }\nadmin:\n  address: \"0.0.0.0:0\"\n"
	if _, err := config.Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), "admin.insecure") {
		t.Fatalf("config: %v", err)
	}
	cfg, err := config.Parse([]byte(yaml + "  insecure: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admin.Insecure = false // as if built in code past the check
	if _, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "admin.insecure") {
		t.Fatalf("lb.New: %v", err)
	}
	cfg.Admin.Insecure = true
	l, err := New(cfg, Options{})
	if err != nil {
		t.Fatalf("admin.insecure: true: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
