package adminhttp

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

func serve(t *testing.T, o Options) string {
	t.Helper()
	g := New(o)
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.Handle("GET /open", ok)
	mux.Handle("/api", g.Token(ok))
	srv := httptest.NewServer(g.Site(mux))
	t.Cleanup(srv.Close)
	return srv.URL
}

func do(t *testing.T, method, url string, hdr map[string]string) int {
	t.Helper()
	code, _ := testutil.HTTPWith(t, method, url, "", hdr)
	return code
}

func TestOriginAndHost(t *testing.T) {
	base := serve(t, Options{AllowedHosts: []string{"mqlb.example.net"}})
	own := strings.TrimPrefix(base, "http://")
	cases := []struct {
		name   string
		method string
		hdr    map[string]string
		want   int
	}{
		{"no origin (curl, mqlb ctl)", "POST", nil, 200},
		{"same origin (the dashboard)", "POST", map[string]string{"Origin": base, "Sec-Fetch-Site": "same-origin"}, 200},
		{"same origin without Sec-Fetch-Site", "POST", map[string]string{"Origin": base}, 200},
		{"foreign origin", "POST", map[string]string{"Origin": "http://evil.example"}, 403},
		{"foreign origin, cross-site fetch", "POST", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"foreign origin and Host", "POST", map[string]string{"Origin": "http://evil.example", "Host": "evil.example"}, 421},
		{"null origin", "DELETE", map[string]string{"Origin": "null"}, 403},
		{"GET with a foreign origin is read-only", "GET", map[string]string{"Origin": "http://evil.example"}, 200},
		{"rebinding Host on GET", "GET", map[string]string{"Host": "evil.example:" + port(own)}, 421},
		{"localhost Host", "GET", map[string]string{"Host": "localhost:" + port(own)}, 200},
		{"allowed Host", "GET", map[string]string{"Host": "MQLB.example.net:" + port(own)}, 200},
		{"allowed Host, same origin POST", "POST", map[string]string{"Host": "mqlb.example.net", "Origin": "http://mqlb.example.net"}, 200},
		{"IPv6 literal Host", "GET", map[string]string{"Host": "[::1]:" + port(own)}, 200},
	}
	for _, c := range cases {
		if got := do(t, c.method, base+"/api", c.hdr); got != c.want {
			t.Errorf("%s: %s = %d, want %d", c.name, c.method, got, c.want)
		}
	}
}

func port(hostport string) string { _, p, _ := net.SplitHostPort(hostport); return p }

func TestAnyHost(t *testing.T) {
	base := serve(t, Options{AllowedHosts: []string{"*"}})
	if got := do(t, "GET", base+"/api", map[string]string{"Host": "whatever.example"}); got != 200 {
		t.Errorf("allowed_hosts [*]: %d", got)
	}
}

func TestBearerToken(t *testing.T) {
	base := serve(t, Options{Token: "s3cret"})
	for auth, want := range map[string]int{
		"":               401,
		"Bearer s3cret":  200,
		"bearer s3cret":  200,
		"BEARER  s3cret": 200,
		"Bearer wrong":   401,
		"Basic s3cret":   401,
		"s3cret":         401,
		"Bearer":         401,
	} {
		if got := do(t, "GET", base+"/api", map[string]string{"Authorization": auth}); got != want {
			t.Errorf("Authorization %q: %d, want %d", auth, got, want)
		}
	}
	if got := do(t, "GET", base+"/open", nil); got != 200 {
		t.Errorf("a route without Token: %d", got)
	}
	if got := do(t, "POST", base+"/api", map[string]string{"Authorization": "Bearer s3cret", "Origin": "http://evil.example"}); got != 403 {
		t.Errorf("a token does not make a foreign origin acceptable: %d", got)
	}
}

func TestListenBeyondLoopback(t *testing.T) {
	if _, err := New(Options{}).Listen("0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "admin.insecure") {
		t.Fatalf("non-loopback without token: %v", err)
	}
	for _, o := range []Options{{Token: "t"}, {Insecure: true}} {
		ln, err := New(o).Listen("0.0.0.0:0")
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		ln.Close()
	}
	ln, err := New(Options{}).Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// TestSecurityHeaders: every answer, refusals included, forbids framing
// (clickjacking), type sniffing and the Referer.
func TestSecurityHeaders(t *testing.T) {
	base := serve(t, Options{Token: "s3cret"})
	for _, c := range []struct {
		name, method, path string
		hdr                map[string]string
	}{
		{"open route", "GET", "/open", nil},
		{"no token (401)", "GET", "/api", nil},
		{"foreign origin (403)", "POST", "/api", map[string]string{"Origin": "http://evil.example"}},
		{"foreign Host (421)", "GET", "/open", map[string]string{"Host": "evil.example"}},
		{"unknown path (404)", "GET", "/nothing", nil},
	} {
		code, hdr, _ := testutil.HTTPDo(t, c.method, base+c.path, "", c.hdr)
		for k, want := range map[string]string{"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
			"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
			if got := hdr.Get(k); got != want {
				t.Errorf("%s (%d): %s: %q, want %q", c.name, code, k, got, want)
			}
		}
	}
}

// TestRoutesJSON: the mux's own 404 and 405 are JSON errors (with Allow
// and no_route); routes that match answer as before.
func TestRoutesJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /w", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("GET /dir/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("dir")) })
	srv := httptest.NewServer(Routes(mux))
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		method, path string
		code         int
		allow, body  string
	}{
		{"PUT", "/w", 200, "", "ok"},
		{"POST", "/w", 405, "PUT", `"error":"method POST not allowed on /w; allowed: PUT","no_route":true`},
		{"GET", "/nothing", 404, "", `"error":"no such endpoint: GET /nothing","no_route":true`},
		{"GET", "/dir", 200, "", "dir"}, // the mux's redirect to /dir/, followed
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || resp.Header.Get("Allow") != c.allow || !strings.Contains(string(b), c.body) ||
			c.code >= 400 && resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d Allow %q %s %q, want %d Allow %q %s", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"),
				resp.Header.Get("Content-Type"), b, c.code, c.allow, c.body)
		}
	}
}
