package lb

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestKickEmptyClientID: client_id= names the clients that sent an empty
// client id (legal in MQTT), not every connection.
func TestKickEmptyClientID(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2})
	base := "http://" + h.admin + "/api/v1"
	anon := openRaw(t, h.addr, "")
	named := openRaw(t, h.addr, "named")
	other := openRaw(t, h.addr, "other")

	if _, body := testutil.HTTP(t, "GET", base+"/connections", ""); !strings.Contains(body, `"total": 3`) {
		t.Fatalf("GET without client_id lists all: %s", body)
	}
	if _, body := testutil.HTTP(t, "GET", base+"/connections?client_id=", ""); !strings.Contains(body, `"total": 1`) || strings.Contains(body, "named") {
		t.Fatalf("GET client_id= lists only the empty client id: %s", body)
	}
	if code, body := testutil.HTTP(t, "DELETE", base+"/connections?client_id=", ""); code != 200 || !strings.Contains(body, `"closed": 1`) {
		t.Fatalf("kick client_id=: %d %s", code, body)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return anon.alive() != nil }, "empty-id connection closed")
	for _, c := range []*rawClient{named, other} {
		if err := c.alive(); err != nil {
			t.Fatalf("%s: kicking the empty client id closed it: %v", c.id, err)
		}
	}
	if code, body := testutil.HTTP(t, "DELETE", base+"/connections?client_id=", ""); code != 404 {
		t.Fatalf("kick client_id= with none left: %d %s", code, body)
	}
}

// TestAdminSecurityHeaders: the load balancer's admin answers (the
// dashboard, the API, errors) cannot be framed by another site; the
// dashboard runs under a policy of its own files only.
func TestAdminSecurityHeaders(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	for _, path := range []string{"/ui/", "/ui/app.js", "/api/v1/upstreams", "/api/v1/nothing", "/healthz", "/metrics"} {
		resp, err := http.Get("http://" + h.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		hd := resp.Header
		if hd.Get("X-Frame-Options") != "DENY" || !strings.Contains(hd.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s (%d): headers %v", path, resp.StatusCode, hd)
		}
		if strings.HasPrefix(path, "/ui/") && !strings.Contains(hd.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: CSP %q, want default-src 'self'", path, hd.Get("Content-Security-Policy"))
		}
	}
}

// TestRuntimeAPIRefusals: the runtime API answers bad input with 400 and
// a JSON error that says what is wrong, and changes nothing.
func TestRuntimeAPIRefusals(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	base := "http://" + h.admin + "/api/v1"
	addr := h.brokers[0].Addr
	for _, tc := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/upstreams/brokers/servers", `{"name":"w0","address":"` + addr + `","weight":0}`, 400, "weight: want a weight from 1 to 256, got 0"},
		{"POST", "/upstreams/brokers/servers", `{"name":"w257","address":"` + addr + `","weight":257}`, 400, "got 257"},
		{"POST", "/upstreams/brokers/servers", `{"name":"wneg","address":"` + addr + `","weight":-1}`, 400, "got -1"},
		{"POST", "/upstreams/brokers/servers", `{"name":"..","address":"` + addr + `"}`, 400, "name: want a name of letters"},
		{"POST", "/upstreams/brokers/servers", `{"name":".","address":"` + addr + `"}`, 400, "name: want a name of letters"},
		{"POST", "/upstreams/brokers/servers", `{"name":"a/b","address":"` + addr + `"}`, 400, "name: want a name of letters"},
		{"POST", "/upstreams/brokers/servers", `{"name":"a b","address":"` + addr + `"}`, 400, "name: want a name of letters"},
		{"POST", "/upstreams/brokers/servers", `{"name":"` + strings.Repeat("n", 129) + `","address":"` + addr + `"}`, 400, "at most 128 bytes"},
		{"POST", "/upstreams/brokers/servers", `{"name":"sp","address":"host with space:1883"}`, 400, "the host has a space"},
		{"POST", "/upstreams/brokers/servers", `{"name":"bp","address":"127.0.0.1:99999"}`, 400, "bad port"},
		{"PUT", "/upstreams/brokers/servers/b0/weight", `{"weight":3} xx`, 400, "want one JSON object"},
		{"POST", "/upstreams/brokers/servers", `{"name":"t","address":"` + addr + `"}{}`, 400, "want one JSON object"},
		{"POST", "/upstreams/brokers/servers/b0/weight", `{"weight":3}`, 405, "method POST not allowed on /api/v1/upstreams/brokers/servers/b0/weight; allowed: PUT"},
		{"GET", "/upstreams/brokers/servers/b0/weight", ``, 405, "allowed: PUT"},
		{"POST", "/upstreams/brokers/servers/b0/bogus", ``, 404, "no such endpoint"},
		{"DELETE", "/upstreams", ``, 405, "allowed: GET"},
		{"GET", "/nothing", ``, 404, "no such endpoint: GET /api/v1/nothing"},
	} {
		code, body := testutil.HTTP(t, tc.method, base+tc.path, tc.body)
		var e struct{ Error string }
		json.Unmarshal([]byte(body), &e)
		if code != tc.code || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s %s %s: %d %s, want %d %q", tc.method, tc.path, tc.body, code, body, tc.code, tc.msg)
		}
		if strings.Contains(e.Error, "upstreams.brokers.servers[") { // a request, not a config file
			t.Errorf("%s %s %s: %s names a config path", tc.method, tc.path, tc.body, e.Error)
		}
	}
	if code, _ := testutil.HTTP(t, "POST", base+"/upstreams/brokers/servers/b0/drain", ""); code != 200 {
		t.Errorf("drain: %d", code)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/upstreams/brokers/servers/b0/weight", strings.NewReader(`{"weight":3}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Header.Get("Allow") != "PUT" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("POST .../weight: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if w := h.lb.Upstreams().Get("brokers").Server("b0").Weight(); w != 1 {
		t.Errorf("weight %d after refused changes, want 1", w)
	}
	if n := len(h.lb.Upstreams().Get("brokers").Servers); n != 1 {
		t.Errorf("%d servers after refused adds, want 1", n)
	}
	// A name taken from an address (IPv6 included) is a good name.
	if code, body := testutil.HTTP(t, "POST", base+"/upstreams/brokers/servers", `{"address":"[::1]:1"}`); code != 201 {
		t.Errorf("add an IPv6 address without a name: %d %s", code, body)
	}
	// Without a weight, the default 1.
	if code, body := testutil.HTTP(t, "POST", base+"/upstreams/brokers/servers", `{"name":"dflt","address":"`+addr+`"}`); code != 201 || !strings.Contains(body, `"weight": 1`) {
		t.Errorf("add without a weight: %d %s", code, body)
	}
}

// TestListenersLimits: GET /api/v1/listeners shows every limit.
func TestListenersLimits(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	var res struct{ Limits map[string]any }
	_, body := testutil.HTTP(t, "GET", "http://"+h.admin+"/api/v1/listeners", "")
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"max_connections", "max_connections_per_ip", "max_pending", "connect_rate_per_ip", "connect_burst_per_ip",
		"connect_timeout_ms", "max_connect_packet", "shutdown_grace_ms"} {
		if _, ok := res.Limits[k]; !ok {
			t.Errorf("limits lack %s: %s", k, body)
		}
	}
	if res.Limits["max_pending"] != float64(10000) {
		t.Errorf("max_pending %v, want the default 10000", res.Limits["max_pending"])
	}
}
