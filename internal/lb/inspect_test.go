package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// countingListener counts the connections a broker accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestGarbageAndSlowClientsNeverReachABroker: anything that is not a valid
// CONNECT is closed by the LB, and the broker accepts no connection at all.
func TestGarbageAndSlowClientsNeverReachABroker(t *testing.T) {
	var accepted atomic.Int64
	wrap := testutil.WithListenerWrap(func(ln net.Listener) net.Listener { return countingListener{ln, &accepted} })
	h := newHarness(t, harnessOpts{brokers: 1, brokerOpt: []testutil.BrokerOption{wrap},
		upstream: "    health_check: { type: none }\n",
		top:      "limits: { connect_timeout: 500ms, max_connect_packet: 1024 }\n"})
	valid := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "ok", CleanStart: true, KeepAlive: 30})
	cases := map[string][]byte{
		"http":           []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"tls hello":      {0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03},
		"5-byte length":  {0x10, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"bad utf8 id":    {0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 4, 0xff, 0xfe, 'a', 'b'},
		"reserved flag":  {0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 30, 0, 2, 'i', 'd'},
		"flags in byte1": append([]byte{0x11}, valid[1:]...),
		"subscribe":      {0x82, 0x06, 0, 1, 0, 1, 'a', 0},
		"too large":      {0x10, 0x80, 0x80, 0x01},
		"slow half":      valid[:len(valid)/2],
		"silent":         nil,
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(b)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v (want the LB to close the connection)", err)
			}
			if len(got) != 0 {
				t.Errorf("LB answered % x; want a plain close", got)
			}
		})
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("broker accepted %d connections; garbage must never reach it", n)
	}
	// And a valid client still gets through.
	if got := connackOf(t, h.addr, valid); got[0] != 0x20 {
		t.Fatalf("valid client got % x", got)
	}
	for _, want := range []string{"result=not_mqtt", "result=malformed", "result=too_large", "result=timeout"} {
		testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), want) },
			"access log has %s:\n%s", want, h.accessLog())
	}
}

// connackOf sends a CONNECT, returns the first 4 bytes of the answer and
// closes the connection.
func connackOf(t testing.TB, addr string, connect []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(connect)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf
}

// TestUnsupportedVersionGetsCode1: MQTT with an unknown level is answered
// 0x01 (unacceptable protocol version) [MQTT-3.1.2-2], then closed.
func TestUnsupportedVersionGetsCode1(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 6, ClientID: "future", CleanStart: true})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(pkt)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	if string(got) != "\x20\x02\x00\x01" {
		t.Fatalf("got % x, want 20 02 00 01", got)
	}
}

// TestLimitsRefuseInTheClientsLanguage: max_connections and the per-IP
// connect rate answer with v5 0x89 / 0x9F and v3 0x03.
func TestLimitsRefuseInTheClientsLanguage(t *testing.T) {
	t.Run("max_connections", func(t *testing.T) {
		h := newHarness(t, harnessOpts{brokers: 1, top: "limits: { max_connections: 2 }\n"})
		for i := range 2 {
			if _, _, err := connectV5(t, h.addr, fmt.Sprint("keep-", i), nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := rawConnect(t, h.addr, 5, "third"); string(got) != "\x20\x03\x00\x89\x00" {
			t.Errorf("v5 over the limit: % x, want 20 03 00 89 00", got)
		}
		if got := rawConnect(t, h.addr, 4, "fourth"); string(got) != "\x20\x02\x00\x03" {
			t.Errorf("v3.1.1 over the limit: % x, want 20 02 00 03", got)
		}
	})
	t.Run("rate", func(t *testing.T) {
		h := newHarness(t, harnessOpts{brokers: 1, top: "limits: { connect_rate_per_ip: 0.001, connect_burst_per_ip: 2 }\n"})
		for i := range 2 {
			if _, _, err := connectV5(t, h.addr, fmt.Sprint("burst-", i), nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := rawConnect(t, h.addr, 5, "fast"); string(got) != "\x20\x03\x00\x9f\x00" {
			t.Errorf("v5 over the rate: % x, want 20 03 00 9f 00", got)
		}
		testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), "result=rate_limited") },
			"access log has rate_limited")
	})
}

// TestInboundProxyProtocol: a trusted peer's PROXY header supplies the
// client address (seen by the broker through PROXY v2 out); a header from
// an untrusted peer is refused while its plain connections work.
func TestInboundProxyProtocol(t *testing.T) {
	trusted := "  - { name: behind-l4, address: \"127.0.0.1:0\", upstream: brokers, proxy_protocol: { accept: true, trusted: [\"127.0.0.0/8\"] } }\n" +
		"  - { name: untrusted, address: \"127.0.0.1:0\", upstream: brokers, proxy_protocol: { accept: true, trusted: [\"10.0.0.0/8\"] } }\n"
	h := newHarness(t, harnessOpts{brokers: 1, listeners: trusted, upstream: "    proxy_protocol: v2\n",
		brokerOpt: []testutil.BrokerOption{testutil.WithProxyProtocol()}})
	connect := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "via-l4", CleanStart: true, KeepAlive: 30})
	hdr := []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4242 1883\r\n")
	if got := connackOf(t, h.lb.ListenerAddr("behind-l4"), append(hdr, connect...)); got[0] != 0x20 || got[3] != 0 {
		t.Fatalf("trusted PROXY client got % x", got)
	}
	seen := h.brokers[0].ConnectsOf("via-l4")
	if len(seen) != 1 || seen[0].Remote != "203.0.113.7:4242" {
		t.Fatalf("broker saw %+v; want remote 203.0.113.7:4242", seen)
	}
	// Untrusted: the header is refused; a plain CONNECT works.
	c, err := net.Dial("tcp", h.lb.ListenerAddr("untrusted"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write(append(hdr, connect...))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(c); len(got) != 0 {
		t.Errorf("untrusted PROXY header answered % x; want a close", got)
	}
	c.Close()
	plain := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "direct", CleanStart: true, KeepAlive: 30})
	if got := connackOf(t, h.lb.ListenerAddr("untrusted"), plain); got[0] != 0x20 || got[3] != 0 {
		t.Fatalf("plain client on the untrusted listener got % x", got)
	}
	// A trusted peer that sends no header is refused.
	c, _ = net.Dial("tcp", h.lb.ListenerAddr("behind-l4"))
	c.Write(connect)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(c); len(got) != 0 {
		t.Errorf("trusted peer without a header got % x; want a close", got)
	}
	c.Close()
	testutil.Eventually(t, 5*time.Second, func() bool {
		log := h.accessLog()
		return strings.Contains(log, "result=proxy_untrusted") && strings.Contains(log, "result=proxy_error") &&
			strings.Contains(log, "remote=203.0.113.7:4242")
	}, "access log has proxy_untrusted, proxy_error and the proxied remote:\n%s", h.accessLog())
}

// TestTooLargeConnectAnswered: a v5 CONNECT over limits.max_connect_packet
// gets CONNACK 0x95 (packet too large) before the close, even while the
// client is still sending it; v3.1.1 has no such code and is closed
// without an answer. No broker sees either.
func TestTooLargeConnectAnswered(t *testing.T) {
	var accepted atomic.Int64
	wrap := testutil.WithListenerWrap(func(ln net.Listener) net.Listener { return countingListener{ln, &accepted} })
	h := newHarness(t, harnessOpts{brokers: 1, brokerOpt: []testutil.BrokerOption{wrap},
		upstream: "    health_check: { type: none }\n",
		top:      "limits: { max_connect_packet: 1024 }\n"})
	big := strings.Repeat("p", 60000) // username and password: 120 kB, more than one read takes

	// A real v5 client: paho.golang writes the whole CONNECT, then reads.
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "big-v5", KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: big, PasswordFlag: true, Password: []byte(big)})
	if ca == nil || ca.ReasonCode != mqttwire.Code5PacketTooLarge {
		t.Fatalf("v5 client: CONNACK %+v, %v; want reason code 0x95", ca, err)
	}

	// The same from a raw socket that reads on after the CONNACK: a clean
	// close, not a reset (a reset can discard the CONNACK on its way).
	pkt5 := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V5, ClientID: "big-raw", CleanStart: true,
		HasUsername: true, Username: big, HasPassword: true, Password: []byte(big)})
	raw5, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw5.Close()
	go raw5.Write(pkt5)
	raw5.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(raw5); err != nil || string(got) != "\x20\x03\x00\x95\x00" {
		t.Fatalf("v5, raw: read % x, %v; want 20 03 00 95 00 and a clean close", got, err)
	}

	// v3.1.1: closed (reset: its bytes were left unread), nothing written back.
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: "big-v3", CleanStart: true,
		HasUsername: true, Username: big[:2000]})
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write(pkt)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(raw); err != nil && !errors.Is(err, syscall.ECONNRESET) || len(got) != 0 {
		t.Fatalf("v3.1.1: read % x, %v; want a plain close", got, err)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("broker accepted %d connections", n)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Count(h.accessLog(), "result=too_large") == 3 },
		"access log has three too_large:\n%s", h.accessLog())
}

// TestCutShortConnectEndsAtOnce: a client that sends part of a CONNECT and
// closes at once (its bytes and its FIN in one wake-up) is finished then,
// not held, with its pending and per-address slots, until connect_timeout.
func TestCutShortConnectEndsAtOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, top: "limits: { connect_timeout: 30s }\n"})
	valid := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "cut", CleanStart: true, KeepAlive: 30})
	for _, b := range [][]byte{valid[:len(valid)-1], valid[:1]} {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.Close()
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Count(h.accessLog(), "\n") >= 2 },
		"no record of the two cut-short connections within 10 s (connect_timeout 30 s):\n%s", h.accessLog())
	if l := h.accessLog(); strings.Contains(l, "result=timeout") {
		t.Errorf("cut-short CONNECTs logged as timeouts:\n%s", l)
	}
}
