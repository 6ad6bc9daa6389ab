package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/authhttp"
	"github.com/mqlb/mqlb/internal/config"
)

// TestHTTPStoreFailsClosed: a real broker whose only store is an HTTP
// service: allow with an ACL, deny, then a slow service (over the timeout)
// and a service that is down answer CONNACK 0x88 server unavailable, and
// the broker keeps serving.
func TestHTTPStoreFailsClosed(t *testing.T) {
	release := make(chan struct{})
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Content-Type") {
		case "application/json":
		default:
			http.Error(w, "want JSON", 400)
			return
		}
		var body [512]byte
		n, _ := r.Body.Read(body[:])
		switch s := string(body[:n]); {
		case strings.Contains(s, `"password":"slow"`):
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case strings.Contains(s, `"password":"good"`):
			fmt.Fprint(w, `{"result":"allow","acl":[{"allow":true,"access":"all","topic":"own/%u"}]}`)
		default:
			fmt.Fprint(w, `{"result":"deny"}`)
		}
	}))
	defer svc.Close()
	defer close(release)
	h := mustNew(t, Options{ACLDefault: false, Backends: []config.AuthBackend{
		{Type: "http", URL: svc.URL, Timeout: config.Duration(300 * time.Millisecond)}}})
	_, addrs := startBroker(t, h)
	c, _, err := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "a", Username: "alice", Password: []byte("good")})
	if err != nil {
		t.Fatal(err)
	}
	if code := c.subscribe(t, "own/alice"); code != 1 {
		t.Errorf("own topic: SUBACK 0x%02x", code)
	}
	if code := c.subscribe(t, "own/bob"); code != 0x87 {
		t.Errorf("other topic: SUBACK 0x%02x", code)
	}
	for _, tc := range []struct {
		pw   string
		want byte
	}{{"bad", 0x86}, {"slow", 0x88}} {
		_, ack, _ := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "b-" + tc.pw, Username: "bob", Password: []byte(tc.pw)})
		if ack == nil || ack.ReasonCode != tc.want {
			t.Errorf("%s: CONNACK %+v, want 0x%02x", tc.pw, ack, tc.want)
		}
	}
	svc.Close()
	_, ack, _ := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "c", Username: "carol", Password: []byte("good")})
	if ack == nil || ack.ReasonCode != 0x88 {
		t.Errorf("service down: CONNACK %+v, want 0x88", ack)
	}
	if code := c.publish1(t, "own/alice"); code != 0 {
		t.Errorf("connected client after the service went down: PUBACK 0x%02x", code)
	}
}

// TestCacheKeysOnAddressAndVersion: a cached http store whose service
// allows user x from 127.0.0.1 over MQTT 5 only. A reconnect from 127.0.0.1
// (another port) is answered from the cache; the same credentials from
// 127.0.0.2, or over MQTT 3.1.1, ask the service again and are refused.
func TestCacheKeysOnAddressAndVersion(t *testing.T) {
	var asked atomic.Int32
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		var req authhttp.Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		host, _, _ := net.SplitHostPort(req.Remote)
		if host == "127.0.0.1" && req.ProtocolVersion == 5 {
			fmt.Fprint(w, `{"result":"allow"}`)
			return
		}
		fmt.Fprint(w, `{"result":"deny"}`)
	}))
	defer svc.Close()
	h := mustNew(t, Options{ACLDefault: true, Backends: []config.AuthBackend{
		{Type: "http", URL: svc.URL, Timeout: config.Duration(5 * time.Second), CacheTTL: config.Duration(time.Minute)}}})
	_, addrs := startBroker(t, h)
	cp := paho.Connect{ClientID: "x", Username: "x", Password: []byte("pw")}
	for i := range 2 {
		c, ack, err := connectV5From(t, "127.0.0.1", addrs["tcp"], cp)
		if err != nil {
			t.Fatalf("from 127.0.0.1 (%d): %v %+v", i, err, ack)
		}
		_ = c.conn.Close()
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("service asked %d times for two connects from 127.0.0.1, want 1 (the port is not in the key)", n)
	}
	if _, ack, err := connectV5From(t, "127.0.0.2", addrs["tcp"], cp); ack == nil {
		t.Errorf("from 127.0.0.2: no CONNACK: %v", err)
	} else if ack.ReasonCode != 0x86 {
		t.Errorf("from 127.0.0.2: CONNACK 0x%02x, want 0x86 (denied by the service, not allowed from the cache)", ack.ReasonCode)
	}
	if _, code := connectV311(t, addrs["tcp"], "x", "x", "pw"); code != 5 {
		t.Errorf("MQTT 3.1.1 from 127.0.0.1: CONNACK code %d, want 5 (denied by the service, not allowed from the cache)", code)
	}
	if n := asked.Load(); n != 3 {
		t.Errorf("service asked %d times, want 3", n)
	}
}

// TestHTTPStoreDoesNotFollowRedirects: a service answering a redirect (to
// another origin that would allow anyone) fails closed: the client is
// refused as server unavailable, the error names the redirect, and the
// other origin never sees the request, nor the password a 307 or 308
// would have re-POSTed.
func TestHTTPStoreDoesNotFollowRedirects(t *testing.T) {
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
		b := newHTTPBackend(svc.URL)
		d, err := b.Authenticate(context.Background(), Request{ClientID: "c", Username: "mallory", Password: "secret-pw"})
		b.Close()
		svc.Close()
		if err == nil || d.Result == Allow {
			t.Errorf("redirect %d: %v %v, want an error (fail closed)", code, d.Result, err)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("HTTP status %d", code)) || !strings.Contains(err.Error(), "redirect") {
			t.Errorf("redirect %d: error %q does not name the redirect", code, err)
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("the redirect's target was asked %d times", n)
	}
}

// TestHTTPStoreErrorsHideURLSecrets: the error of a store over its timeout
// (logged by the node) does not quote the URL's query or user info.
func TestHTTPStoreErrorsHideURLSecrets(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done() // slower than the timeout
	}))
	defer svc.Close()
	b := newHTTPBackend(strings.Replace(svc.URL, "http://", "http://svcuser:url-password@", 1) + "/mqtt/auth?api_key=query-secret")
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := b.Authenticate(ctx, Request{Username: "u", Password: "pw"})
	if err == nil {
		t.Fatal("service over its timeout: no error")
	}
	for _, secret := range []string{"query-secret", "svcuser", "url-password"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes %q: %v", secret, err)
		}
	}
}

// TestHTTPStoreDuplicateKeys: a real broker whose store answers
// {"result":"deny","result":"allow"} (encoding/json keeps the last) refuses
// the client as server unavailable: a malformed answer, not an allow.
func TestHTTPStoreDuplicateKeys(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"result":"deny","result":"allow"}`)
	}))
	defer svc.Close()
	h := mustNew(t, Options{ACLDefault: true, Backends: []config.AuthBackend{
		{Type: "http", URL: svc.URL, Timeout: config.Duration(2 * time.Second)}}})
	_, addrs := startBroker(t, h)
	_, ack, _ := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "d", Username: "mallory", Password: []byte("pw")})
	if ack == nil || ack.ReasonCode != 0x88 {
		t.Errorf("duplicate result key: CONNACK %+v, want 0x88 server unavailable", ack)
	}
}
