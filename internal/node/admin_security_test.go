package node

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestAdminForeignOriginAndHost is issue 11 item 5 on the node: the same
// rules as the load balancer's admin (internal/adminhttp).
func TestAdminForeignOriginAndHost(t *testing.T) {
	c := shared(t)
	base := "http://" + c.nodes[0].AdminAddr()
	for _, tc := range []struct {
		method string
		hdr    map[string]string
		want   int
	}{
		{"GET", map[string]string{"Host": "rebind.evil.example"}, http.StatusMisdirectedRequest},
		{"POST", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"GET", map[string]string{"Host": "localhost"}, http.StatusOK},
	} {
		// A refused POST gets 403; an accepted one reaches the mux (405: GET only).
		if code, _ := testutil.HTTPWith(t, tc.method, base+"/metrics", "", tc.hdr); code != tc.want {
			t.Errorf("%s %v: %d, want %d", tc.method, tc.hdr, code, tc.want)
		}
	}
}

func TestAdminBeyondLoopbackNeedsToken(t *testing.T) {
	cfg := nodeConfig("exposed", 0, t.TempDir())
	cfg.Admin.Address = "0.0.0.0:0"
	if _, err := startNode(cfg); err == nil || !strings.Contains(err.Error(), "admin.insecure") {
		t.Fatalf("a node admin beyond loopback without a token started: %v", err)
	}
}

// TestAdminSecurityHeaders: the node's admin answers cannot be framed by
// another site (clickjacking), nor sniffed, nor leak a Referer.
func TestAdminSecurityHeaders(t *testing.T) {
	c := shared(t)
	for _, path := range []string{"/metrics", "/healthz", "/api/v1/clients", "/nothing"} {
		resp, err := http.Get("http://" + c.nodes[0].AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		hd := resp.Header
		if hd.Get("X-Frame-Options") != "DENY" || hd.Get("Content-Security-Policy") != "frame-ancestors 'none'" ||
			hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s (%d): headers %v", path, resp.StatusCode, hd)
		}
	}
}

// TestAdminJSONErrors: the node's 404 and 405 are JSON errors too.
func TestAdminJSONErrors(t *testing.T) {
	c := shared(t)
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/api/v1/nothing", 404, ""},
		{"POST", "/api/v1/clients", 405, "GET, HEAD"},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, "http://"+c.nodes[0].AdminAddr()+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error   string
			NoRoute bool `json:"no_route"`
		}
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.code || err != nil || e.Error == "" || !e.NoRoute || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q %+v %v", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), e, err)
		}
	}
}
