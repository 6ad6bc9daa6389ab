package lb

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// apiDo sends method url with token as a bearer token (none when "").
func apiDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	var hdr map[string]string
	if token != "" {
		hdr = map[string]string{"Authorization": "Bearer " + token}
	}
	return testutil.HTTPWith(t, method, url, "", hdr)
}

func TestAdminAPI(t *testing.T) {
	h := newHarness(t, harnessOpts{upstream: "    balance: sticky\n"})
	base := "http://" + h.admin
	for i := range 6 {
		openRaw(t, h.addr, fmt.Sprintf("api-%d", i))
	}
	t.Run("healthz", func(t *testing.T) {
		if code, body := apiDo(t, "GET", base+"/healthz", ""); code != 200 || body != "ok\n" {
			t.Errorf("%d %q", code, body)
		}
	})
	t.Run("upstreams", func(t *testing.T) {
		code, body := apiDo(t, "GET", base+"/api/v1/upstreams", "")
		var got struct {
			Upstreams []struct {
				Name, Balance string
				Servers       []struct {
					Name, State string
					Active      int64
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
			t.Fatalf("%d %v: %s", code, err, body)
		}
		var active int64
		for _, s := range got.Upstreams[0].Servers {
			active += s.Active
		}
		if got.Upstreams[0].Balance != "sticky" || len(got.Upstreams[0].Servers) != 3 || active != 6 {
			t.Errorf("upstreams: %s", body)
		}
	})
	t.Run("connections filter", func(t *testing.T) {
		_, body := apiDo(t, "GET", base+"/api/v1/connections?client_id=api-3", "")
		var got struct {
			Total       int
			Connections []struct {
				ClientID string `json:"client_id"`
			}
		}
		json.Unmarshal([]byte(body), &got)
		if got.Total != 1 || got.Connections[0].ClientID != "api-3" {
			t.Errorf("filter: %s", body)
		}
		if _, body := apiDo(t, "GET", base+"/api/v1/connections", ""); !strings.Contains(body, `"total": 6`) {
			t.Errorf("all: %s", body)
		}
	})
	t.Run("sticky", func(t *testing.T) {
		code, body := apiDo(t, "GET", base+"/api/v1/sticky/brokers", "")
		if code != 200 || !strings.Contains(body, `"key": "api-0"`) || !strings.Contains(body, `"size": 6`) {
			t.Errorf("%d %s", code, body)
		}
		if code, _ := apiDo(t, "GET", base+"/api/v1/sticky/nope", ""); code != 404 {
			t.Errorf("unknown upstream: %d", code)
		}
	})
	t.Run("drain enable disable", func(t *testing.T) {
		srv := h.lb.Upstreams().Get("brokers").Server("b2")
		for _, tc := range []struct{ action, state string }{{"drain", "drain"}, {"disable", "disabled"}, {"enable", "up"}} {
			code, body := apiDo(t, "POST", base+"/api/v1/upstreams/brokers/servers/b2/"+tc.action, "")
			if code != 200 || srv.State().String() != tc.state || !strings.Contains(body, `"state": "`+tc.state+`"`) ||
				!strings.Contains(body, `"state_changed": "`) {
				t.Errorf("%s: %d %s, state %s", tc.action, code, body, srv.State())
			}
		}
		for _, url := range []string{"/api/v1/upstreams/brokers/servers/zz/drain", "/api/v1/upstreams/zz/servers/b2/drain", "/api/v1/upstreams/brokers/servers/b2/explode"} {
			if code, _ := apiDo(t, "POST", base+url, ""); code != 404 {
				t.Errorf("%s: %d, want 404", url, code)
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		_, body := apiDo(t, "GET", base+"/metrics", "")
		for _, want := range []string{
			`mqlb_connections_active{listener="mqtt",server=`,
			`mqlb_connections_total{listener="mqtt",result="ok"} 6`,
			`mqlb_bytes_total{direction="in",server="b0",upstream="brokers"}`,
			`mqlb_server_up{server="b0",upstream="brokers"} 1`,
			`mqlb_health_check_duration_seconds_bucket`,
			`mqlb_connect_inspect_seconds_count 6`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestAdminToken(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, top: "admin: { address: \"127.0.0.1:0\", token: s3cret }\n"})
	base := "http://" + h.admin
	if code, _ := apiDo(t, "GET", base+"/api/v1/upstreams", ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := apiDo(t, "GET", base+"/metrics", "wrong"); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, _ := apiDo(t, "GET", base+"/api/v1/upstreams", "s3cret"); code != 200 {
		t.Errorf("right token: %d, want 200", code)
	}
	if code, _ := apiDo(t, "GET", base+"/healthz", ""); code != 200 {
		t.Errorf("healthz needs no token: %d", code)
	}
	if code, body := apiDo(t, "GET", base+"/ui/", ""); code != 200 || !strings.Contains(body, "mqlb") {
		t.Errorf("dashboard: %d", code)
	}
}

// TestAdminTokenRotatedByReload: a reload applies a new admin.token at
// once (an operator rotating a leaked one); the old one is refused from
// then on. It was kept until a restart, with a warning naming only the
// address, on the first reload after the change only.
func TestAdminTokenRotatedByReload(t *testing.T) {
	o := harnessOpts{brokers: 1, top: "admin: { address: \"127.0.0.1:0\", token: old-token }\n"}
	h := newHarness(t, o)
	base := "http://" + h.admin + "/api/v1/upstreams"
	if code, _ := apiDo(t, "GET", base, "old-token"); code != 200 {
		t.Fatalf("old token before the reload: %d", code)
	}
	o.top = "admin: { address: \"127.0.0.1:0\", token: new-token }\n"
	h.write(h.yaml([]string{h.brokers[0].Addr}, o))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := apiDo(t, "GET", base, "old-token"); code != 401 {
		t.Errorf("old token after the reload: %d, want 401", code)
	}
	if code, _ := apiDo(t, "GET", base, "new-token"); code != 200 {
		t.Errorf("new token after the reload: %d, want 200", code)
	}
}

func TestHealthzDuringShutdown(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, top: "limits: { shutdown_grace: 5s }\n"})
	c := openRaw(t, h.addr, "holder")
	h.cancel()
	testutil.Eventually(t, 5*time.Second, func() bool { return !h.lb.Serving() }, "draining")
	// The admin server stays up while connections drain, and says so.
	if code, _ := apiDo(t, "GET", "http://"+h.admin+"/healthz", ""); code != 503 {
		t.Errorf("healthz while draining: %d, want 503", code)
	}
	c.c.Close()
}

// TestMetricsSeriesFromStart: the per-server series of the contract's
// metrics exist at 0 before their first event, so a query or an alert on
// them (increase(), absent()) sees a series, not nothing.
func TestMetricsSeriesFromStart(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2})
	base := "http://" + h.admin
	want := []string{
		`mqlb_connections_active{listener="mqtt",server="b0",upstream="brokers"} 0`,
		`mqlb_connections_active{listener="mqtt",server="b1",upstream="brokers"} 0`,
		`mqlb_rebalance_moved_total{server="b0",upstream="brokers"} 0`,
		`mqlb_rebalance_moved_total{server="b1",upstream="brokers"} 0`,
		`mqlb_connect_queue_length{upstream="brokers"} 0`,
	}
	_, body := apiDo(t, "GET", base+"/metrics", "")
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("metrics before any connection lack %s", w)
		}
	}
	// A connection counts on its server; the other stays at 0.
	openRaw(t, h.addr, "series-0")
	b := h.brokerOf("series-0")
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, body = apiDo(t, "GET", base+"/metrics", "")
		return strings.Contains(body, fmt.Sprintf(`mqlb_connections_active{listener="mqtt",server="b%d",upstream="brokers"} 1`, b)) &&
			strings.Contains(body, fmt.Sprintf(`mqlb_connections_active{listener="mqtt",server="b%d",upstream="brokers"} 0`, 1-b))
	}, "connections_active per server after one connection:\n%s", body)
}
