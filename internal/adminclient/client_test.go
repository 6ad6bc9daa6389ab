package adminclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/x", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			w.WriteHeader(401)
			w.Write([]byte(`{"error": "missing or wrong bearer token"}`))
			return
		}
		w.WriteHeader(409)
		w.Write([]byte(`{"error": "busy"}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	c, _ := New(srv.URL, "")
	if _, err := c.Do(ctx, "GET", "/api/v1/x", nil); err == nil || !strings.Contains(err.Error(), "MQLB_TOKEN") {
		t.Errorf("401: %v", err)
	}
	c, _ = New(strings.TrimPrefix(srv.URL, "http://"), "t")
	if _, err := c.Do(ctx, "GET", "/api/v1/x", nil); err == nil || err.Error() != "409 Conflict: busy" || IsNoRoute(err) {
		t.Errorf("409: %v", err)
	}
	if _, err := c.Do(ctx, "GET", "/api/v1/none", nil); !IsNoRoute(err) {
		t.Errorf("no route: %v", err)
	}
	if _, err := New("ftp://x", ""); err == nil {
		t.Error("ftp accepted")
	}
}

// TestNoRouteJSON: an admin server's JSON 404/405 for a path it does not
// have (adminhttp.Routes) is a missing route; its JSON 404 for a thing it
// does not have (an unknown client) is not.
func TestNoRouteJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/gone", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		w.Write([]byte(`{"error": "no client \"x\""}`))
	})
	mux.HandleFunc("GET /api/v1/none", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		w.Write([]byte(`{"error": "no such endpoint: GET /api/v1/none", "no_route": true}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, _ := New(srv.URL, "")
	if _, err := c.Do(t.Context(), "GET", "/api/v1/none", nil); !IsNoRoute(err) {
		t.Errorf("JSON no_route: %v", err)
	}
	if _, err := c.Do(t.Context(), "GET", "/api/v1/gone", nil); err == nil || IsNoRoute(err) {
		t.Errorf("unknown client: %v", err)
	}
}
