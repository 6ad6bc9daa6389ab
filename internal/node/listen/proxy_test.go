package listen

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqlb/mqlb/internal/testutil"
)

func TestProxyHeaderFromTrustedPeerSetsRemote(t *testing.T) {
	ts := startServer(t, Options{ID: "pp", Type: TypeTCP, ProxyProtocol: true, Trusted: loopback})
	for _, version := range []byte{1, 2} {
		id := fmt.Sprintf("proxied-v%d", version)
		c := dial(t, ts.addr["pp"])
		writeHeader(t, c, headerFrom(version, "203.0.113.7:4242"))
		mustConnectV5(t, c, paho.Connect{ClientID: id})
		got := ts.rec.wait(t, id)
		if got.Remote != "203.0.113.7:4242" {
			t.Errorf("PROXY v%d: mochi saw remote %q, want 203.0.113.7:4242", version, got.Remote)
		}
		if got.Listener != "pp" {
			t.Errorf("PROXY v%d: listener %q, want pp", version, got.Listener)
		}
	}
}

func TestProxyHeaderFromUntrustedPeerRefused(t *testing.T) {
	elsewhere := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	ts := startServer(t, Options{ID: "pp", Type: TypeTCP, ProxyProtocol: true, Trusted: elsewhere})

	spoof := dial(t, ts.addr["pp"])
	writeHeader(t, spoof, headerFrom(2, "203.0.113.7:4242"))
	waitClosed(t, spoof, 5*time.Second)

	// A plain connection from the same untrusted address is fine, and mochi
	// sees the socket's own address.
	plain := dial(t, ts.addr["pp"])
	mustConnectV5(t, plain, paho.Connect{ClientID: "plain"})
	if got := ts.rec.wait(t, "plain"); got.Remote != plain.LocalAddr().String() {
		t.Errorf("remote %q, want the socket address %q", got.Remote, plain.LocalAddr())
	}
}

func TestTrustedPeerWithoutHeaderRefused(t *testing.T) {
	ts := startServer(t, Options{ID: "pp", Type: TypeTCP, ProxyProtocol: true, Trusted: loopback})
	c := dial(t, ts.addr["pp"])
	_, _, ca, err := connectV5(t, c, paho.Connect{ClientID: "no-header"})
	if err == nil || ca != nil {
		t.Fatalf("connect without the required header: connack %v, err %v; want the connection closed", ca, err)
	}
	if ts.rec.has("no-header") {
		t.Error("a session was established without the required PROXY header")
	}
}

func TestSlowProxyHeaderTimesOutWithoutBlockingOthers(t *testing.T) {
	const timeout = 500 * time.Millisecond
	ts := startServer(t, Options{ID: "pp", Type: TypeTCP, ProxyProtocol: true, Trusted: loopback, ProxyTimeout: timeout})

	slow := dial(t, ts.addr["pp"]) // sends nothing
	closed := make(chan time.Duration, 1)
	go func() { closed <- waitClosedNoFail(slow, 10*time.Second) }()

	fast := dial(t, ts.addr["pp"])
	writeHeader(t, fast, headerFrom(1, "198.51.100.1:1000"))
	mustConnectV5(t, fast, paho.Connect{ClientID: "fast"})
	select {
	case <-closed:
		t.Fatal("slow connection was closed before the other client finished connecting")
	default:
	}

	select {
	case took := <-closed:
		if took < 0 {
			t.Fatal("slow connection was never closed")
		}
		if took < timeout-50*time.Millisecond {
			t.Errorf("slow connection closed after %v, before ProxyTimeout %v", took, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow connection still open")
	}
}

// waitClosedNoFail is waitClosed for use off the test goroutine: it returns
// how long the close took, or -1 when the connection stayed open.
func waitClosedNoFail(c interface {
	Read([]byte) (int, error)
	SetReadDeadline(time.Time) error
}, within time.Duration) time.Duration {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	buf := make([]byte, 16)
	for {
		if _, err := c.Read(buf); err != nil {
			if time.Since(start) >= within {
				return -1
			}
			return time.Since(start)
		}
	}
}

// TestHandshakeFailureLoggedByProxiedAddress: behind a trusted peer's
// PROXY header, a TLS handshake that fails is logged with the client
// address the header names, not the peer's (HAProxy's accept-proxy applies
// it before the handshake too). Before, the node logged the load
// balancer's address.
func TestHandshakeFailureLoggedByProxiedAddress(t *testing.T) {
	ca := testutil.NewCA(t)
	out := new(testutil.SyncBuffer)
	s := mqtt.New(&mqtt.Options{Logger: discardLogger()})
	if err := s.AddHook(new(mochiauth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	l, err := New(Options{ID: "tlspp", Type: TypeTLS, Address: "127.0.0.1:0", TLS: ca.ServerConfig(t, tls.NoClientCert),
		ProxyProtocol: true, Trusted: loopback, CloseClients: ClientCloser(s)}, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := dial(t, l.Address())
	writeHeader(t, c, headerFrom(1, "198.51.100.7:4242"))
	if _, err := c.Write([]byte("\x10\x0cnot a TLS ClientHello")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(out.String(), "preamble failed") },
		"the failed handshake logged; log:\n%s", out.String())
	if line := out.String(); !strings.Contains(line, "remote=198.51.100.7:4242") {
		t.Errorf("failed handshake logged without the address the PROXY header named:\n%s", line)
	}
}
