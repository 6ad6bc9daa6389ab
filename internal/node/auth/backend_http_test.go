package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

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
