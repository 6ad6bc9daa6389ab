package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
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

// TestEnhancedAuthRefused: the node supports no MQTT 5 enhanced
// authentication method. A CONNECT with an Authentication Method gets
// CONNACK 0x8C bad authentication method and the close [MQTT-4.12.0-1], as
// from mosquitto 2.0, before any credential store is asked: a client doing
// SCRAM for mutual authentication must not believe it succeeded. An AUTH
// packet after a CONNECT without one is a protocol error (§4.12, §3.15):
// DISCONNECT 0x82, then the close (3.1.1 reserves the packet type: the
// close). The node answered such a CONNECT with 0x00 and no Authentication
// Method, ignored an AUTH packet and kept the connection, and closed
// without a word on an AUTH with no reason code (remaining length 0,
// which MQTT 5 allows).
func TestEnhancedAuthRefused(t *testing.T) {
	n, asked := askedStore(t)
	addr := n.ListenerAddr("tcp")
	creds := func(pk *packets.Packet) {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte("alice")
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte("pw")
	}
	closed := func(c *testutil.Raw) error {
		pk, err := c.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("read %v (type %d), %v; want the close", pk.FixedHeader, pk.FixedHeader.Type, err)
	}

	c, ack := testutil.DialV5(t, addr, "scram", waitFor, creds, func(pk *packets.Packet) {
		pk.Properties.AuthenticationMethod = "SCRAM-SHA-1"
		pk.Properties.AuthenticationData = []byte("n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")
	})
	if ack.ReasonCode != packets.ErrBadAuthenticationMethod.Code || ack.Properties.AuthenticationMethod != "" {
		t.Errorf("CONNECT with Authentication Method SCRAM-SHA-1: CONNACK 0x%02x (method %q), want 0x8c",
			ack.ReasonCode, ack.Properties.AuthenticationMethod)
	}
	if err := closed(c); err != nil {
		t.Errorf("after the CONNACK to an Authentication Method: %v", err)
	}
	if a := asked.Load(); a != 0 {
		t.Errorf("credential store asked %d times for a CONNECT with an Authentication Method, want 0", a)
	}

	var scram bytes.Buffer
	auth := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Auth}, ProtocolVersion: 5,
		ReasonCode: packets.CodeContinueAuthentication.Code}
	auth.Properties.AuthenticationMethod = "SCRAM-SHA-1"
	if err := auth.AuthEncode(&scram); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"continue, SCRAM-SHA-1": scram.Bytes(), "no reason code": {0xf0, 0x00}} {
		c, ack := testutil.DialV5(t, addr, "auth-after", waitFor, creds)
		if ack.ReasonCode != 0 {
			t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
		}
		write(t, c, b)
		pk, err := c.Next()
		if err != nil || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrProtocolViolation.Code {
			t.Errorf("v5 AUTH (%s) after a CONNECT without Authentication Method: read type %d code 0x%02x, %v; want DISCONNECT 0x82",
				name, pk.FixedHeader.Type, pk.ReasonCode, err)
			continue
		}
		if err := closed(c); err != nil {
			t.Errorf("v5 AUTH (%s), after the DISCONNECT: %v", name, err)
		}
	}
	c3, ack3 := testutil.DialV311(t, addr, "auth-after-3", waitFor, creds)
	if ack3.ReasonCode != 0 {
		t.Fatalf("3.1.1 CONNACK 0x%02x", ack3.ReasonCode)
	}
	write(t, c3, []byte{0xf0, 0x00})
	if err := closed(c3); err != nil {
		t.Errorf("3.1.1, packet type 15 (reserved): %v", err)
	}
}
