package lb

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// identityHarness is an LB whose mqtts listener requires client
// certificates and applies identity (the YAML flow map's inside).
type identityHarness struct {
	*harness
	ca   *testutil.CA
	tlsA string
}

// health checks off: a broker that saw any CONNECT saw a client's.
const noHealth = "    health_check: { type: none }\n"

func newIdentityHarness(t *testing.T, identity string, o harnessOpts) *identityHarness {
	ca := testutil.NewCA(t)
	srv := ca.Server("lb")
	o.listeners += fmt.Sprintf("  - name: mqtts\n    address: \"127.0.0.1:0\"\n    upstream: brokers\n"+
		"    tls: { cert: %q, key: %q, client_ca: %q, client_auth: require, identity: { %s } }\n",
		srv.CertFile, srv.KeyFile, ca.CAFile(), identity)
	if o.upstream == "" {
		o.upstream = noHealth
	}
	h := newHarness(t, o)
	return &identityHarness{harness: h, ca: ca, tlsA: h.lb.ListenerAddr("mqtts")}
}

// dial opens a TLS connection with a client certificate for cn.
func (h *identityHarness) dial(t *testing.T, cn string) *tls.Conn {
	t.Helper()
	dev := h.ca.Client(cn)
	c, err := tls.Dial("tcp", h.tlsA, &tls.Config{RootCAs: h.ca.Pool, ServerName: "localhost", Certificates: []tls.Certificate{dev.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConnack sends c and returns the CONNACK code the LB answered.
func rawConnack(t *testing.T, conn net.Conn, c *mqttwire.Connect) byte {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(mqttwire.AppendConnect(nil, c)); err != nil {
		t.Fatal(err)
	}
	var buf []byte
	tmp := make([]byte, 64)
	for {
		n, err := conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if _, code, _, perr := mqttwire.ParseConnack(buf, c.Version); perr == nil {
			return code
		}
		if err != nil {
			t.Fatalf("no CONNACK: read % x, %v", buf, err)
		}
	}
}

func brokerConnects(h *harness) int64 {
	var n int64
	for _, b := range h.brokers {
		n += b.ConnectCount()
	}
	return n
}

// TestIdentityMismatchRefused: with require_match: client_id, a client whose
// certificate CN is not its client id gets CONNACK not authorized in its
// own protocol version, no broker sees a connection; a client whose CN is
// its client id goes through.
func TestIdentityMismatchRefused(t *testing.T) {
	h := newIdentityHarness(t, "from: cn, require_match: client_id", harnessOpts{})
	for _, tc := range []struct {
		version byte
		want    byte
	}{{mqttwire.V311, mqttwire.Code3NotAuthorized}, {mqttwire.V5, mqttwire.Code5NotAuthorized}, {mqttwire.V31, mqttwire.Code3NotAuthorized}} {
		got := rawConnack(t, h.dial(t, "device-7"), &mqttwire.Connect{Version: tc.version, ClientID: "device-8", CleanStart: true})
		if got != tc.want {
			t.Errorf("v%d: CONNACK 0x%02x, want 0x%02x", tc.version, got, tc.want)
		}
	}
	if n := brokerConnects(h.harness); n != 0 {
		t.Fatalf("brokers saw %d CONNECTs of refused clients", n)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Count(h.accessLog(), `identity="device-7"`) == 3 && strings.Count(h.accessLog(), "result=not_authorized") == 3
	}, "three refusals with the identity in the access log:\n%s", h.accessLog())
	if got := rawConnack(t, h.dial(t, "device-7"), &mqttwire.Connect{Version: mqttwire.V5, ClientID: "device-7", CleanStart: true}); got != 0 {
		t.Fatalf("matching client: CONNACK 0x%02x", got)
	}
	code, body := apiDo(t, "GET", "http://"+h.admin+"/api/v1/connections?client_id=device-7", "")
	if code != 200 || !strings.Contains(body, `"identity": "device-7"`) {
		t.Fatalf("connections API: %d %s", code, body)
	}
}

// TestIdentityRequireUsername: require_match: username compares the user
// name; a client without one is refused.
func TestIdentityRequireUsername(t *testing.T) {
	h := newIdentityHarness(t, "require_match: username", harnessOpts{brokers: 1})
	if got := rawConnack(t, h.dial(t, "dev-u"), &mqttwire.Connect{Version: mqttwire.V311, ClientID: "x"}); got != mqttwire.Code3NotAuthorized {
		t.Errorf("no user name: 0x%02x", got)
	}
	ok := &mqttwire.Connect{Version: mqttwire.V311, ClientID: "x", Username: "dev-u", HasUsername: true}
	if got := rawConnack(t, h.dial(t, "dev-u"), ok); got != 0 {
		t.Errorf("matching user name: 0x%02x", got)
	}
}

// TestIdentityRewriteUsernameMochi: rewrite_username puts the CN into the
// CONNECT a mochi broker receives; the client's own user name and password,
// its will and its v5 properties still arrive.
func TestIdentityRewriteUsernameMochi(t *testing.T) {
	h := newIdentityHarness(t, "require_match: none, rewrite_username: true", harnessOpts{brokers: 1})
	for _, v := range []byte{mqttwire.V311, mqttwire.V5} {
		id := fmt.Sprintf("rw-%d", v)
		c := &mqttwire.Connect{Version: v, ClientID: id, CleanStart: true, KeepAlive: 30, Username: "claimed", HasUsername: true,
			Password: []byte("pw"), HasPassword: true, WillFlag: true, WillQoS: 1, WillTopic: "wills/" + id, WillPayload: []byte("gone"),
			SessionExpiry: 120}
		if got := rawConnack(t, h.dial(t, "device-cn"), c); got != 0 {
			t.Fatalf("v%d: CONNACK 0x%02x", v, got)
		}
		seen := h.brokers[0].ConnectsOf(id)
		if len(seen) != 1 || seen[0].Username != "device-cn" {
			t.Fatalf("v%d: broker saw %+v; want user name device-cn", v, seen)
		}
		cl, ok := h.brokers[0].Server.Clients.Get(id)
		if !ok || cl.Properties.Will.TopicName != "wills/"+id || string(cl.Properties.Will.Payload) != "gone" {
			t.Fatalf("v%d: will lost: %+v", v, cl.Properties.Will)
		}
		if v == mqttwire.V5 && cl.Properties.Props.SessionExpiryInterval != 120 {
			t.Fatalf("session expiry lost: %d", cl.Properties.Props.SessionExpiryInterval)
		}
	}
}

// TestIdentityRewriteClientIDMQTT31: rewrite_client_id cannot give an
// MQTT 3.1 client an identity longer than that level's 23 characters: the
// client is refused with 0x02 identifier rejected, as a 3.1 broker would
// refuse the CONNECT the load balancer would otherwise send it; 3.1.1 and
// 5 take it.
func TestIdentityRewriteClientIDMQTT31(t *testing.T) {
	h := newIdentityHarness(t, "require_match: none, rewrite_client_id: true", harnessOpts{brokers: 1})
	long := "device-with-a-rather-long-name" // 30 characters
	if got := rawConnack(t, h.dial(t, long), &mqttwire.Connect{Version: mqttwire.V31, ClientID: "x", CleanStart: true, KeepAlive: 30}); got != mqttwire.Code3IdentifierRejected {
		t.Errorf("MQTT 3.1, a 30-character identity: CONNACK 0x%02x, want 0x02", got)
	}
	if got := rawConnack(t, h.dial(t, long), &mqttwire.Connect{Version: mqttwire.V311, ClientID: "x", CleanStart: true, KeepAlive: 30}); got != 0 {
		t.Errorf("MQTT 3.1.1: CONNACK 0x%02x", got)
	}
	if got := rawConnack(t, h.dial(t, "short-id"), &mqttwire.Connect{Version: mqttwire.V31, ClientID: "x", CleanStart: true, KeepAlive: 30}); got != 0 {
		t.Errorf("MQTT 3.1, a short identity: CONNACK 0x%02x", got)
	}
}

// TestIdentityRewriteControlChar: an identity with a control character is
// not written into a CONNECT (mosquitto would close on it, and the load
// balancer refuses such strings from clients): the client is refused with
// the code for the field it would have gone to, and no broker sees it.
func TestIdentityRewriteControlChar(t *testing.T) {
	for _, tc := range []struct {
		identity string
		v3, v5   byte
	}{
		{"rewrite_username: true", mqttwire.Code3BadUsernameOrPassword, mqttwire.Code5BadUsernameOrPassword},
		{"rewrite_client_id: true, rewrite_username: true", mqttwire.Code3IdentifierRejected, mqttwire.Code5ClientIdentifierNotValid},
	} {
		h := newIdentityHarness(t, "require_match: none, "+tc.identity, harnessOpts{brokers: 1})
		for v, want := range map[byte]byte{mqttwire.V311: tc.v3, mqttwire.V5: tc.v5} {
			c := &mqttwire.Connect{Version: v, ClientID: "x", CleanStart: true, KeepAlive: 30}
			if got := rawConnack(t, h.dial(t, "dev\x01ice"), c); got != want {
				t.Errorf("%s, v%d: CONNACK 0x%02x; want 0x%02x", tc.identity, v, got, want)
			}
		}
		if n := brokerConnects(h.harness); n != 0 {
			t.Errorf("%s: the broker saw %d CONNECTs; want none", tc.identity, n)
		}
	}
}

// TestIdentityRewriteMosquitto: mosquitto accepts the rewritten CONNECT
// (3.1.1 and 5.0, with a will) and logs the certificate CN as the user name.
func TestIdentityRewriteMosquitto(t *testing.T) {
	m := testutil.StartMosquitto(t, "log_dest stderr\nlog_type all\nconnection_messages true\n")
	h := newIdentityHarness(t, "require_match: client_id, rewrite_username: true", harnessOpts{servers: []string{m.Addr}})
	for _, v := range []byte{mqttwire.V311, mqttwire.V5} {
		conn := h.dial(t, "sensor-42")
		c := &mqttwire.Connect{Version: v, ClientID: "sensor-42", CleanStart: true, KeepAlive: 30,
			WillFlag: true, WillTopic: "wills/x", WillPayload: []byte("bye")}
		if got := rawConnack(t, conn, c); got != 0 {
			t.Fatalf("v%d: CONNACK 0x%02x; mosquitto said:\n%s", v, got, m.Output())
		}
		conn.Close()
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Count(m.Output(), "as sensor-42 (p2") == 1 && strings.Count(m.Output(), "as sensor-42 (p5") == 1 &&
			strings.Count(m.Output(), "u'sensor-42'") == 2
	}, "mosquitto logged both connections with user name sensor-42:\n%s", m.Output())
}

// TestIdentityRewriteClientThroughPaho: a real MQTT 5 client with a
// mismatching user name is rewritten and can publish and receive.
func TestIdentityRewriteClientThroughPaho(t *testing.T) {
	h := newIdentityHarness(t, "require_match: client_id, rewrite_username: true", harnessOpts{brokers: 1})
	conn := h.dial(t, "paho-dev")
	got := make(chan string, 1)
	// paho.golang's thread-safe conn: see TestMutualTLSCarriesCNInProxyV2.
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) { got <- string(p.Packet.Payload); return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "paho-dev", Username: "someone", UsernameFlag: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}}); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ctx, c, got, "t/1", "hi")
	if seen := h.brokers[0].ConnectsOf("paho-dev"); len(seen) != 1 || seen[0].Username != "paho-dev" {
		t.Fatalf("broker saw %+v", seen)
	}
}
