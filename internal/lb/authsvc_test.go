package lb

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/lbauth"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// authService is a real HTTP authentication service: password "good"
// allows, "bad" denies, "boom" answers 500, "odd" answers an unknown
// result, "slow" answers after release is closed.
type authService struct {
	*httptest.Server
	calls   atomic.Int64
	release chan struct{}
	mu      sync.Mutex
	last    lbauth.Request
}

func startAuthService(t *testing.T) *authService {
	s := &authService{release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		var req lbauth.Request
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.last = req
		s.mu.Unlock()
		switch req.Password {
		case "good":
			fmt.Fprint(w, `{"result":"allow"}`)
		case "bad":
			fmt.Fprint(w, `{"result":"deny"}`)
		case "boom":
			http.Error(w, "oops", http.StatusInternalServerError)
		case "slow":
			<-s.release
			fmt.Fprint(w, `{"result":"allow"}`)
		default:
			fmt.Fprint(w, `{"result":"maybe"}`)
		}
	}))
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.Close()
	})
	return s
}

func (s *authService) lastRequest() lbauth.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func authUpstream(url, extra string) string {
	return noHealth + fmt.Sprintf("    auth: { type: http, url: %q, timeout: 300ms%s }\n", url, extra)
}

// connectWith sends a CONNECT with a user name and password straight to addr.
func connectWith(t *testing.T, addr string, v byte, id, password string) byte {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return rawConnack(t, conn, &mqttwire.Connect{Version: v, ClientID: id, CleanStart: true,
		Username: "user-" + id, HasUsername: true, Password: []byte(password), HasPassword: true})
}

// TestAuthServiceDecides: allow passes the client on with the request the
// contract names; deny is not authorized; a 500, an unknown result, a slow
// service and a service that is down are server unavailable; no refused
// client reaches a broker and the password is in no log.
func TestAuthServiceDecides(t *testing.T) {
	svc := startAuthService(t)
	h := newHarness(t, harnessOpts{brokers: 2, upstream: authUpstream(svc.URL, "")})
	if got := connectWith(t, h.addr, mqttwire.V5, "ok-1", "good"); got != 0 {
		t.Fatalf("allow: CONNACK 0x%02x", got)
	}
	r := svc.lastRequest()
	if r.ClientID != "ok-1" || r.Username != "user-ok-1" || r.Password != "good" || r.ProtocolVersion != 5 || !strings.HasPrefix(r.Remote, "127.0.0.1:") {
		t.Fatalf("service got %+v", r)
	}
	before := brokerConnects(h)
	for _, tc := range []struct {
		password string
		v        byte
		want     byte
	}{
		{"bad", mqttwire.V311, mqttwire.Code3NotAuthorized},
		{"bad", mqttwire.V5, mqttwire.Code5NotAuthorized},
		{"boom", mqttwire.V311, mqttwire.Code3ServerUnavailable},
		{"boom", mqttwire.V5, mqttwire.Code5ServerUnavailable},
		{"odd", mqttwire.V5, mqttwire.Code5ServerUnavailable},
		{"slow", mqttwire.V311, mqttwire.Code3ServerUnavailable},
	} {
		start := time.Now()
		if got := connectWith(t, h.addr, tc.v, "c-"+tc.password, tc.password); got != tc.want {
			t.Errorf("%s v%d: CONNACK 0x%02x, want 0x%02x", tc.password, tc.v, got, tc.want)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: refusal took %v (timeout 300ms)", tc.password, d)
		}
	}
	close(svc.release)
	svc.Close() // down: connection refused
	if got := connectWith(t, h.addr, mqttwire.V5, "c-down", "good"); got != mqttwire.Code5ServerUnavailable {
		t.Errorf("service down: CONNACK 0x%02x", got)
	}
	if n := brokerConnects(h); n != before {
		t.Fatalf("brokers saw %d CONNECTs of refused clients", n-before)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		l := h.accessLog()
		return strings.Count(l, "result=not_authorized") == 2 && strings.Count(l, "result=auth_error") == 5
	}, "refusals in the access log:\n%s", h.accessLog())
	for _, secret := range []string{"good", "bad", "boom"} {
		if strings.Contains(h.accessLog(), secret) && !strings.Contains(h.accessLog(), "c-"+secret) {
			t.Fatalf("password %q in the access log", secret)
		}
	}
	_, metrics := apiDo(t, "GET", "http://"+h.admin+"/metrics", "")
	for _, want := range []string{`mqlb_auth_total{result="allow",upstream="brokers"} 1`, `mqlb_auth_total{result="deny",upstream="brokers"} 2`,
		`mqlb_auth_total{result="error",upstream="brokers"} 5`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAuthServiceCache: with cache_ttl, a second connect with the same
// credentials is decided without asking; other credentials are asked.
func TestAuthServiceCache(t *testing.T) {
	svc := startAuthService(t)
	h := newHarness(t, harnessOpts{brokers: 1, upstream: authUpstream(svc.URL, ", cache_ttl: 1m")})
	for range 3 {
		if got := connectWith(t, h.addr, mqttwire.V311, "cached", "good"); got != 0 {
			t.Fatalf("CONNACK 0x%02x", got)
		}
	}
	for range 2 {
		if got := connectWith(t, h.addr, mqttwire.V311, "cached", "bad"); got != mqttwire.Code3NotAuthorized {
			t.Fatalf("deny: CONNACK 0x%02x", got)
		}
	}
	if n := svc.calls.Load(); n != 2 {
		t.Fatalf("service asked %d times, want 2 (one per credentials)", n)
	}
	svc.Close()
	if got := connectWith(t, h.addr, mqttwire.V311, "cached", "good"); got != 0 {
		t.Fatalf("cached allow with the service down: CONNACK 0x%02x", got)
	}
	if got := connectWith(t, h.addr, mqttwire.V311, "other", "good"); got != mqttwire.Code3ServerUnavailable {
		t.Fatalf("uncached with the service down: CONNACK 0x%02x", got)
	}
}

// TestAuthServiceAfterIdentity: on a listener that rewrites the user name
// from the certificate, the service is asked with the rewritten user name
// and the certificate identity, and its deny still refuses.
func TestAuthServiceAfterIdentity(t *testing.T) {
	svc := startAuthService(t)
	h := newIdentityHarness(t, "require_match: client_id, rewrite_username: true", harnessOpts{brokers: 1, upstream: authUpstream(svc.URL, "")})
	c := &mqttwire.Connect{Version: mqttwire.V311, ClientID: "meter-9", Username: "x", HasUsername: true, Password: []byte("good"), HasPassword: true}
	if got := rawConnack(t, h.dial(t, "meter-9"), c); got != 0 {
		t.Fatalf("CONNACK 0x%02x", got)
	}
	if r := svc.lastRequest(); r.Username != "meter-9" || r.CertIdentity != "meter-9" || r.Password != "good" {
		t.Fatalf("service got %+v", r)
	}
	c.Password = []byte("bad")
	if got := rawConnack(t, h.dial(t, "meter-9"), c); got != mqttwire.Code3NotAuthorized {
		t.Fatalf("deny: CONNACK 0x%02x", got)
	}
}

// TestAuthServiceReload: a reload turns the service on and off for new
// connections.
func TestAuthServiceReload(t *testing.T) {
	svc := startAuthService(t)
	h := newHarness(t, harnessOpts{brokers: 1, upstream: noHealth})
	servers := []string{h.brokers[0].Addr}
	if got := connectWith(t, h.addr, mqttwire.V311, "r-1", "bad"); got != 0 {
		t.Fatalf("no auth: CONNACK 0x%02x", got)
	}
	h.write(h.yaml(servers, harnessOpts{upstream: authUpstream(svc.URL, "")}))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := connectWith(t, h.addr, mqttwire.V311, "r-2", "bad"); got != mqttwire.Code3NotAuthorized {
		t.Fatalf("auth on: CONNACK 0x%02x", got)
	}
	h.write(h.yaml(servers, harnessOpts{upstream: noHealth}))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := connectWith(t, h.addr, mqttwire.V311, "r-3", "bad"); got != 0 {
		t.Fatalf("auth off again: CONNACK 0x%02x", got)
	}
}
