package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestStickyClientIDAcrossReconnects: with balance client_id a client lands
// on the same broker every time it reconnects, whatever its protocol version.
func TestStickyClientIDAcrossReconnects(t *testing.T) {
	h := newHarness(t, harnessOpts{upstream: "    balance: client_id\n"})
	home := map[string]int{}
	used := map[int]bool{}
	for i := range 24 {
		id := fmt.Sprintf("device-%d", i)
		c, _, err := connectV5(t, h.addr, id, nil)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		home[id] = h.brokerOf(id)
		used[home[id]] = true
		c.Disconnect(&paho.Disconnect{})
		h.waitIdle()
	}
	if len(used) < 2 {
		t.Fatalf("24 client ids all landed on brokers %v; want them spread", used)
	}
	for id, want := range home {
		testutil.Eventually(t, 5*time.Second, func() bool { return h.brokerOf(id) == -1 }, "%s disconnected", id)
		c, err := connectV3(t, h.addr, id)
		if err != nil {
			t.Fatalf("reconnect %s (3.1.1): %v", id, err)
		}
		if got := h.brokerOf(id); got != want {
			t.Errorf("%s reconnected to broker %d, first connection went to %d", id, got, want)
		}
		c.Disconnect(50)
		h.waitIdle()
	}
}

// TestBrokerStoppedFailsOver: a stopped broker is marked down within about
// interval × fall, and its clients, reconnecting, are served by the others.
func TestBrokerStoppedFailsOver(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	victimIDs := map[string]bool{}
	for i := 0; len(victimIDs) < 3 && i < 200; i++ {
		id := fmt.Sprintf("fo-%d", i)
		c, _, err := connectV5(t, h.addr, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.brokerOf(id) == 1 {
			victimIDs[id] = true
		} else {
			c.Disconnect(&paho.Disconnect{})
		}
	}
	if len(victimIDs) < 3 {
		t.Fatal("no client ids landed on broker 1")
	}
	srv := h.lb.Upstreams().Get("brokers").Server("b1")
	stopped := time.Now()
	h.brokers[1].Stop()
	testutil.Eventually(t, 3*time.Second, func() bool { return !srv.Healthy() }, "b1 marked down")
	t.Logf("b1 marked down %v after it stopped (interval 100ms × fall 2)", time.Since(stopped).Round(time.Millisecond))
	for id := range victimIDs {
		if _, _, err := connectV5(t, h.addr, id, nil); err != nil {
			t.Fatalf("%s reconnect after failover: %v", id, err)
		}
		if b := h.brokerOf(id); b == 1 || b == -1 {
			t.Errorf("%s served by broker %d after b1 stopped", id, b)
		}
	}
}

// TestDeadServerIsRetriedPast: with health checks off, clients whose first
// choice is a dead address are served by the next one, and the dead server
// is marked down by the failed attempts alone.
func TestDeadServerIsRetriedPast(t *testing.T) {
	dead := testutil.RefusingAddr(t)
	h := newHarness(t, harnessOpts{brokers: 2, servers: []string{dead},
		upstream: "    balance: client_id\n    health_check: { type: none, fall: 2, interval: 1h }\n"})
	for i := range 30 {
		id := fmt.Sprintf("retry-%d", i)
		c, _, err := connectV5(t, h.addr, id, nil)
		if err != nil {
			t.Fatalf("%s: %v (a dead server must not reach the client)", id, err)
		}
		c.Disconnect(&paho.Disconnect{})
	}
	srv := h.lb.Upstreams().Get("brokers").Server("b0")
	if srv.Failures() == 0 || srv.Healthy() {
		t.Errorf("dead server: failures %d healthy %v; want failures and marked down", srv.Failures(), srv.Healthy())
	}
	// The access log says which clients were retried (HAProxy's %rc): as
	// many records with retries=1 as failed attempts, none on b0.
	want := int(srv.Failures())
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Count(h.accessLog(), "\n") == 30 }, "30 access-log records")
	if got := strings.Count(h.accessLog(), " retries=1 "); got != want {
		t.Errorf("%d records with retries=1, want %d (failed attempts):\n%s", got, want, h.accessLog())
	}
	if strings.Contains(h.accessLog(), "server=b0 ") {
		t.Error("a record names the dead server")
	}
}

// TestRefusalWhenNoServer: when no server can take a client, it gets a
// CONNACK in its own protocol: v3.x 0x03, v5 0x88.
func TestRefusalWhenNoServer(t *testing.T) {
	h := newHarness(t, harnessOpts{servers: []string{testutil.RefusingAddr(t)}})
	_, ca, err := connectV5(t, h.addr, "refused-v5", nil)
	if err == nil || ca == nil || ca.ReasonCode != 0x88 {
		t.Errorf("v5: connack %+v, err %v; want reason 0x88 server unavailable", ca, err)
	}
	_, err = connectV3(t, h.addr, "refused-v3")
	if !errors.Is(err, packets.ErrorRefusedServerUnavailable) {
		t.Errorf("v3.1.1: %v; want server unavailable (0x03)", err)
	}
	for _, v := range []byte{mqttwire.V31, mqttwire.V311, mqttwire.V5} {
		got := rawConnect(t, h.addr, v, "raw")
		want := mqttwire.AppendConnack(nil, v, false, map[byte]byte{3: 3, 4: 3, 5: 0x88}[v])
		if string(got) != string(want) {
			t.Errorf("version %d: got % x then EOF, want % x", v, got, want)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		log := h.accessLog()
		return strings.Contains(log, "result=no_server") && strings.Contains(log, `client_id="refused-v5"`)
	}, "access log has the refusal:\n%s", h.accessLog())
}

// rawConnect sends a CONNECT and returns everything read until the LB closes.
func rawConnect(t testing.TB, addr string, version byte, id string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: version, CleanStart: true, ClientID: id, KeepAlive: 30}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (want the LB to close after its answer)", err)
	}
	return b
}

// TestPipelinedPacketsReachTheBroker: a client that sends CONNECT,
// SUBSCRIBE and PUBLISH in one write gets its own message back: the bytes
// after the CONNECT are forwarded, not lost.
func TestPipelinedPacketsReachTheBroker(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: "pipe", KeepAlive: 30})
	b = append(b, 0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x00) // SUBSCRIBE id 1 "a/b" QoS 0
	b = append(b, 0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i')         // PUBLISH QoS 0 "a/b" "hi"
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 0, 64)
	buf := make([]byte, 64)
	for !strings.Contains(string(got), "a/bhi") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v; got % x so far", err, got)
		}
		got = append(got, buf[:n]...)
	}
	if got[0] != 0x20 {
		t.Errorf("first packet % x, want a CONNACK", got[:2])
	}
}

// TestConnectSplitAcrossSegments: a CONNECT sent a byte at a time still
// gets through.
func TestConnectSplitAcrossSegments(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 5, CleanStart: true, ClientID: "drip", KeepAlive: 30,
		Username: "u", HasUsername: true, Password: []byte("secret-pw"), HasPassword: true})
	for _, b := range pkt {
		c.Write([]byte{b})
		time.Sleep(time.Millisecond) // separate TCP segments (stimulus, not synchronisation)
	}
	rp, err := mqttwire.ReadConnack(c, 5, nil)
	if err != nil || rp.Code != 0 {
		t.Fatalf("connack %d, %v", rp.Code, err)
	}
	c.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), `client_id="drip" username="u"`) },
		"access log record for drip")
	if strings.Contains(h.accessLog(), "secret-pw") {
		t.Error("the password appears in the access log")
	}
}

// TestConnectRetriesZeroStillRefusesCleanly checks connect_retries: 0 with a
// dead only server: one attempt, then the refusal.
func TestConnectRetriesZeroStillRefusesCleanly(t *testing.T) {
	h := newHarness(t, harnessOpts{servers: []string{testutil.RefusingAddr(t)}, upstream: "    connect_retries: 0\n    health_check: { type: none }\n"})
	if got := rawConnect(t, h.addr, 4, "x"); string(got) != "\x20\x02\x00\x03" {
		t.Errorf("got % x, want 20 02 00 03", got)
	}
	if f := h.lb.Upstreams().Get("brokers").Server("b0").Failures(); f != 1 {
		t.Errorf("failures %d, want exactly 1 attempt", f)
	}
}

func TestShutdownWaitsForConnections(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, top: "limits: { shutdown_grace: 10s }\n"})
	c, _, err := connectV5(t, h.addr, "stayer", nil)
	if err != nil {
		t.Fatal(err)
	}
	h.cancel()
	testutil.Eventually(t, 5*time.Second, func() bool {
		d, err := net.DialTimeout("tcp", h.addr, 100*time.Millisecond)
		if err == nil {
			d.Close()
		}
		return err != nil
	}, "listener closed on shutdown")
	// The open connection still works during the grace period.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "still/here", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatalf("publish during shutdown grace: %v", err)
	}
	select {
	case <-h.done:
		t.Fatal("Run returned while a connection was open")
	default:
	}
	c.Disconnect(&paho.Disconnect{})
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		h.done <- nil // for the cleanup's stop
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last connection closed")
	}
}

// TestShutdownGraceClosesStragglers: at the end of the grace period, open
// connections are closed, relayed ones and those still in their handshake
// (which would otherwise hold the shutdown for connect_timeout).
func TestShutdownGraceClosesStragglers(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, top: "limits: { shutdown_grace: 300ms, connect_timeout: 60s }\n"})
	c, err := connectV3(t, h.addr, "straggler")
	if err != nil {
		t.Fatal(err)
	}
	holdHalfConnects(t, h.addr, "127.0.0.1", 1)
	testutil.Eventually(t, 5*time.Second, func() bool { return h.lb.proxy.Pending() == 1 }, "one handshake pending")
	h.cancel()
	select {
	case <-h.done:
		h.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the grace period")
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return !c.IsConnectionOpen() }, "client closed after grace")
}

// TestProxyHeaderToPlainBrokerHinted: a broker that does not take the PROXY
// protocol (mosquitto without it) hangs up after the header; the health
// check's error says what is likely wrong instead of only "connection
// reset by peer".
func TestProxyHeaderToPlainBrokerHinted(t *testing.T) {
	m := testutil.StartMosquitto(t, "")
	h := newHarness(t, harnessOpts{servers: []string{m.Addr}, upstream: "    proxy_protocol: v2\n"})
	srv := h.lb.Upstreams().Get("brokers").Server("b0")
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(srv.Health().LastError, "does it accept the PROXY protocol?")
	}, "health check error with the hint; last: %q", srv.Health().LastError)
}
