package lbauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

func state(cn string, dns []string, uri string) *tls.ConnectionState {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
	if uri != "" {
		u, _ := url.Parse(uri)
		leaf.URIs = []*url.URL{u}
	}
	return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
}

func TestIdentityFrom(t *testing.T) {
	st := state("cn-1", []string{"dev1.example", "dev2.example"}, "spiffe://example/device/7")
	for from, want := range map[string]string{"cn": "cn-1", "san_dns": "dev1.example", "san_uri": "spiffe://example/device/7"} {
		if got := (&identity{from: from}).of(st); got != want {
			t.Errorf("%s: %q, want %q", from, got, want)
		}
	}
	if got := (&identity{from: "san_dns"}).of(state("cn", nil, "")); got != "" {
		t.Errorf("no SAN: %q", got)
	}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "x"}}}}
	if got := (&identity{from: "cn"}).of(unverified); got != "" {
		t.Errorf("unverified certificate gave %q", got)
	}
}

func TestIdentityApply(t *testing.T) {
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: "dev-1", CleanStart: true})
	c, _, _ := mqttwire.ParseConnect(pkt)
	conn := &Conn{Connect: &c, Packet: pkt, TLS: state("dev-1", nil, "")}
	if v := (&identity{from: "cn", match: "client_id"}).apply(conn); !v.OK || v.Identity != "dev-1" || v.Packet != nil {
		t.Errorf("match: %+v", v)
	}
	if v := (&identity{from: "cn", match: "username"}).apply(conn); v.OK || v.Refusal != mqttwire.RefuseNotAuthorized {
		t.Errorf("no user name: %+v", v)
	}
	v := (&identity{from: "cn", match: "none", rewriteUser: true}).apply(conn)
	got, _, err := mqttwire.ParseConnect(v.Packet)
	if !v.OK || err != nil || got.Username != "dev-1" || !got.HasUsername || v.Username != "dev-1" {
		t.Errorf("rewrite: %+v %+v %v", v, got, err)
	}
	conn.TLS = nil
	if v := (&identity{from: "cn", match: "none"}).apply(conn); v.OK || !errors.Is(v.Err, errNoIdentity) {
		t.Errorf("no certificate: %+v", v)
	}
}

func TestCacheBoundAndExpiry(t *testing.T) {
	c := newCache(time.Hour, 100)
	for i := range 1000 {
		c.put(keyOf(&Request{ClientID: fmt.Sprint(i)}), true)
	}
	if len(c.m) > 100 {
		t.Fatalf("cache holds %d entries, bound 100", len(c.m))
	}
	k := keyOf(&Request{ClientID: "last", Password: "p"})
	c.put(k, false)
	if allow, ok := c.get(k); !ok || allow {
		t.Fatalf("get: %v %v", allow, ok)
	}
	if keyOf(&Request{Password: "a", Remote: "1.2.3.4:5"}) != keyOf(&Request{Password: "a", Remote: "1.2.3.4:6"}) {
		t.Error("the client's port changes the key")
	}
	if keyOf(&Request{Password: "a"}) == keyOf(&Request{Password: "b"}) {
		t.Error("the password does not change the key")
	}
	short := newCache(time.Nanosecond, 10)
	short.put(k, true)
	time.Sleep(time.Millisecond) // let the entry expire (not synchronisation)
	if _, ok := short.get(k); ok {
		t.Error("expired entry returned")
	}
}

// TestConcurrencyBound: with max_concurrent 1 and the one request slot held
// by a slow answer, the next client fails closed within the timeout.
func TestConcurrencyBound(t *testing.T) {
	release := make(chan struct{})
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, `{"result":"allow"}`)
	}))
	defer srv.Close()
	defer close(release)
	s, err := newService("u", &config.UpstreamAuth{Type: "http", URL: srv.URL, Timeout: config.Duration(200 * time.Millisecond),
		MaxConcurrent: 1, CacheSize: 10}, NewMetrics(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.decide(context.Background(), &Request{ClientID: "a"})
		done <- err
	}()
	// Wait until the first request holds the slot.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.sem) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	_, err = s.decide(context.Background(), &Request{ClientID: "b"})
	// It waited for the slot until its timeout (or got it too late to be
	// answered): either way it fails, closed, in about the timeout.
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("second request: %v after %v", err, time.Since(start))
	}
	if err := <-done; err == nil {
		t.Fatal("first request did not time out")
	}
	if n := asked.Load(); n > 2 {
		t.Fatalf("service asked %d times", n)
	}
}

// gateFor is a gate with one upstream "u" whose auth service is at url.
func gateFor(t *testing.T, url string, timeout time.Duration, log *slog.Logger) *Gate {
	t.Helper()
	s, err := newService("u", &config.UpstreamAuth{Type: "http", URL: url, Timeout: config.Duration(timeout),
		MaxConcurrent: 4, CacheSize: 10}, NewMetrics(), log)
	if err != nil {
		t.Fatal(err)
	}
	return &Gate{identities: map[string]*identity{}, services: map[string]*service{"u": s}}
}

// connWith is a v5 client of upstream "u" sending user name and password.
func connWith(user, pw string) *Conn {
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: "dev-1", CleanStart: true,
		Username: user, HasUsername: true, Password: []byte(pw), HasPassword: true})
	c, _, _ := mqttwire.ParseConnect(pkt)
	return &Conn{Listener: "l", Upstream: "u", Remote: netip.MustParseAddrPort("192.0.2.7:50000"), Connect: &c, Packet: pkt}
}

// TestServiceDoesNotFollowRedirects: an auth service answering a redirect
// (to another origin that allows anyone) fails the client closed, as any
// status but 200: server unavailable, the redirect named in the refusal;
// the other origin never sees the request, the password (a 307 or 308
// re-POSTs the body) nor a Referer holding the URL's query.
func TestServiceDoesNotFollowRedirects(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		fmt.Fprint(w, `{"result":"allow"}`)
	}))
	defer other.Close()
	for _, code := range []int{301, 302, 303, 307, 308} {
		svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/allow-all", code)
		}))
		g := gateFor(t, svc.URL+"/auth?api_key=query-secret", 2*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
		v := g.Admit(context.Background(), connWith("mallory", "secret-pw"))
		svc.Close()
		if v.OK || v.Result != ResultAuthError || v.Refusal != mqttwire.RefuseUnavailable {
			t.Errorf("redirect %d: %+v, want refused as server unavailable", code, v)
		} else if !strings.Contains(v.Err.Error(), "redirect") {
			t.Errorf("redirect %d: refusal %q does not name the redirect", code, v.Err)
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("the redirect's target was asked %d times", n)
	}
}

// TestServiceErrorsHideURLSecrets: a service over its timeout refuses the
// client as server unavailable; neither the warning logged nor the
// refusal's reason (the access log's) quotes the URL's query (an API key)
// or user info.
func TestServiceErrorsHideURLSecrets(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done() // slower than the timeout
	}))
	defer svc.Close()
	logs := new(strings.Builder)
	u := strings.Replace(svc.URL, "http://", "http://svcuser:url-password@", 1) + "/mqtt/auth?api_key=query-secret"
	g := gateFor(t, u, 200*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
	v := g.Admit(context.Background(), connWith("dev", "pw"))
	if v.OK || v.Result != ResultAuthError || v.Err == nil {
		t.Fatalf("service over its timeout: %+v, want refused as server unavailable", v)
	}
	for what, text := range map[string]string{"refusal reason": v.Err.Error(), "log": logs.String()} {
		for _, secret := range []string{"query-secret", "svcuser", "url-password"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s quotes %q: %s", what, secret, text)
			}
		}
		if !strings.Contains(text, "/mqtt/auth") {
			t.Errorf("%s does not name the service: %s", what, text)
		}
	}
}

// TestServiceDuplicateKeys: an answer {"result":"deny","result":"allow"}
// (encoding/json keeps the last) refuses the client as server unavailable.
func TestServiceDuplicateKeys(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"result":"deny","result":"allow"}`)
	}))
	defer svc.Close()
	g := gateFor(t, svc.URL, 2*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if v := g.Admit(context.Background(), connWith("mallory", "pw")); v.OK || v.Result != ResultAuthError {
		t.Errorf("duplicate result key: %+v, want refused as server unavailable", v)
	}
}
