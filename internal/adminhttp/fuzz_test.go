package adminhttp

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzRequestHeaders feeds arbitrary Host, Origin and Authorization headers
// through the guard: it must answer (never panic), and never let a request
// with a wrong token through.
func FuzzRequestHeaders(f *testing.F) {
	f.Add("127.0.0.1:9090", "http://127.0.0.1:9090", "Bearer s3cret", "POST")
	f.Add("evil.example", "null", "bearer s3cret", "DELETE")
	f.Add("[::1]:9090", "", "BEARER   s3cret  ", "GET")
	f.Add("mqlb.example.net.", "http://mqlb.example.net", "Basic czNjcmV0", "PUT")
	f.Add("", "http://[::1", "Bearer", "POST")
	g := New(Options{Token: "s3cret", AllowedHosts: []string{"mqlb.example.net"}})
	reached := false
	h := g.Site(g.Token(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })))
	f.Fuzz(func(t *testing.T, host, origin, auth, method string) {
		r := httptest.NewRequest("GET", "http://127.0.0.1/api", nil)
		if validMethod(method) {
			r.Method = method
		}
		r.Host = host
		r.Header.Set("Origin", origin)
		r.Header.Set("Authorization", auth)
		reached = false
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if reached && string(bearer(r)) != "s3cret" {
			t.Fatalf("reached the handler with Authorization %q", auth)
		}
		if reached && !g.hostAllowed(host) {
			t.Fatalf("reached the handler with Host %q", host)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
