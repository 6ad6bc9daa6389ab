package node

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// askedStore starts a node whose one credential store is an HTTP service
// that allows everyone and counts how often it is asked; anonymous clients
// are refused.
func askedStore(t *testing.T) (*Node, *atomic.Int64) {
	t.Helper()
	asked := new(atomic.Int64)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Add(1)
		fmt.Fprint(w, `{"result":"allow"}`)
	}))
	t.Cleanup(svc.Close)
	no := false
	n := soloNode(t, func(c *config.Node) {
		c.Auth = config.NodeAuth{AllowAnonymous: &no,
			Backends: []config.AuthBackend{{Type: "http", URL: svc.URL, Timeout: config.Duration(2 * time.Second)}}}
		c.SetDefaults()
	})
	return n, asked
}

// TestMalformedUsernameClosed: a CONNECT whose user name is not a valid
// MQTT UTF-8 string — ill-formed UTF-8, a surrogate, U+0000 — is malformed
// [MQTT-1.5.3-1/-2] (3.1.1) [MQTT-1.5.4-1/-2] (5): the connection is closed
// without a CONNACK, as for a client identifier or will topic that is not
// one (mochi refuses those while decoding), and as the load balancer and
// mosquitto do. No credential store is asked. mochi v2.7.9 decodes the
// user name as binary data: the stores were asked with it (PostgreSQL
// failing with "invalid byte sequence", a warning per attempt) and the
// client got 0x03/0x88 or was let in. A password is binary data: any
// bytes are checked as sent.
func TestMalformedUsernameClosed(t *testing.T) {
	n, asked := askedStore(t)
	addr := n.ListenerAddr("tcp")
	for _, version := range []byte{mqttwire.V311, mqttwire.V5} {
		for _, user := range []string{"\xff\xfeab", "a\x00b", "\xed\xa0\x80"} {
			c := rawDial(t, addr)
			write(t, c, rawConnect(version, "bad-user", user, "pw"))
			if got := readUntilClosed(t, c); len(got) != 0 {
				t.Errorf("level %d, user name % x: node sent % x; want the close without a CONNACK", version, user, got)
			}
		}
		c := rawDial(t, addr)
		write(t, c, mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: version, ClientID: "bad-will", CleanStart: true,
			KeepAlive: 30, WillFlag: true, WillTopic: "will/\xff", WillPayload: []byte("x")}))
		if got := readUntilClosed(t, c); len(got) != 0 {
			t.Errorf("level %d, will topic not UTF-8: node sent % x; want the close without a CONNACK", version, got)
		}
	}
	if a := asked.Load(); a != 0 {
		t.Fatalf("the credential store was asked %d times for malformed user names", a)
	}
	for _, version := range []byte{mqttwire.V311, mqttwire.V5} {
		c := rawDial(t, addr)
		write(t, c, rawConnect(version, "binary-pw", "alice", "\xff\x00\xed\xa0\x80"))
		if code := readConnack(t, c, version); code != 0 {
			t.Errorf("level %d, a password of any bytes: CONNACK 0x%02x, want 0 (the store allows)", version, code)
		}
	}
	if a := asked.Load(); a != 2 {
		t.Errorf("store asked %d times for two valid CONNECTs, want 2", a)
	}
}

// TestPasswordWithoutUsernameClosed: a 3.1 or 3.1.1 CONNECT with the
// password flag set and the user name flag clear is a protocol violation
// [MQTT-3.1.2-22]: the connection is closed without a CONNACK (3.x has no
// code for it), as the load balancer and mosquitto do, and no credential
// store is asked. mochi v2.7.9 took it, and the stores were asked with user
// name "" (or the client was let in as anonymous where allowed). MQTT 5
// allows a password without a user name: it is still checked.
func TestPasswordWithoutUsernameClosed(t *testing.T) {
	n, asked := askedStore(t)
	addr := n.ListenerAddr("tcp")
	for _, version := range []byte{mqttwire.V31, mqttwire.V311} {
		c := rawDial(t, addr)
		write(t, c, mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: version, ClientID: "pw-no-user", CleanStart: true,
			KeepAlive: 30, HasPassword: true, Password: []byte("secret")}))
		if got := readUntilClosed(t, c); len(got) != 0 {
			t.Errorf("level %d, a password without a user name: node sent % x; want the close without a CONNACK", version, got)
		}
	}
	if a := asked.Load(); a != 0 {
		t.Fatalf("the credential store was asked %d times for 3.x passwords without a user name", a)
	}
	c := rawDial(t, addr)
	write(t, c, mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: "pw-no-user-5", CleanStart: true,
		KeepAlive: 30, HasPassword: true, Password: []byte("secret")}))
	if code := readConnack(t, c, mqttwire.V5); code != 0 || asked.Load() != 1 {
		t.Errorf("v5, a password without a user name: CONNACK 0x%02x, store asked %d times; want 0 and 1 (the store allows)",
			code, asked.Load())
	}
}
