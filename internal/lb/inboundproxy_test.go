package lb

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// proxiedTLSHarness is an LB with a TLS listener, a plain one and a
// WebSocket one, each taking PROXY headers from 127.0.0.2 only.
func proxiedTLSHarness(t *testing.T, top string) (h *harness, tlsAddr, plainAddr string) {
	srv := testutil.NewCA(t).Server("lb")
	pp := "    proxy_protocol: { accept: true, trusted: [\"127.0.0.2\"] }\n"
	listeners := "  - name: tls-pp\n    address: \"127.0.0.1:0\"\n    upstream: brokers\n" + pp +
		fmt.Sprintf("    tls: { cert: %q, key: %q }\n", srv.CertFile, srv.KeyFile) +
		"  - name: plain-pp\n    address: \"127.0.0.1:0\"\n    upstream: brokers\n" + pp +
		"  - name: ws-pp\n    address: \"127.0.0.1:0\"\n    upstream: brokers\n    websocket: {}\n" + pp
	h = newHarness(t, harnessOpts{brokers: 1, upstream: noHealth, listeners: listeners, top: top})
	return h, h.lb.ListenerAddr("tls-pp"), h.lb.ListenerAddr("plain-pp")
}

// dialFrom connects to addr from the local address from and writes b.
func dialFrom(t *testing.T, from, addr string, b []byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write(b)
	return c
}

// closedWithin reports whether the LB closes c within d (reading nothing).
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF || err != nil && !isTimeoutErr(err)
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// accessRecord waits for the access-log line holding want and returns it.
func accessRecord(t *testing.T, h *harness, want string) string {
	t.Helper()
	var line string
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, l := range strings.Split(h.accessLog(), "\n") {
			if strings.Contains(l, want) {
				line = l
				return true
			}
		}
		return false
	}, "an access-log record with %s:\n%s", want, h.accessLog())
	return line
}

// TestProxiedAddressBeforeTLS: behind a trusted PROXY peer, a connection
// is counted against limits.max_connections_per_ip and logged by the
// client address its header names as soon as the header is read, before
// the TLS handshake: the third handshake stalled behind headers naming one
// address is closed over the limit at once, and a failed handshake's
// record names the client, not the peer.
func TestProxiedAddressBeforeTLS(t *testing.T) {
	h, tlsAddr, _ := proxiedTLSHarness(t, "limits: { connect_timeout: 20s, max_connections_per_ip: 2 }\n")
	var held []net.Conn
	for i := range 3 {
		hdr := fmt.Sprintf("PROXY TCP4 198.51.100.9 192.0.2.1 %d 8883\r\n", 5000+i)
		held = append(held, dialFrom(t, "127.0.0.2", tlsAddr, []byte(hdr)))
	}
	// The three are served concurrently: any one of them is the third.
	closed := -1
	for i, c := range held {
		if closedWithin(c, time.Second) {
			if closed >= 0 {
				t.Fatalf("handshakes %d and %d closed; want one, over max_connections_per_ip 2", closed, i)
			}
			closed = i
		}
	}
	if closed < 0 {
		t.Fatal("three stalled TLS handshakes behind headers for 198.51.100.9 all open; want one closed over max_connections_per_ip 2")
	}
	if rec := accessRecord(t, h, fmt.Sprintf("remote=198.51.100.9:%d", 5000+closed)); !strings.Contains(rec, "result=over_ip_limit") {
		t.Errorf("the closed handshake's record: %s; want result=over_ip_limit", rec)
	}
	dialFrom(t, "127.0.0.2", tlsAddr, []byte("PROXY TCP4 198.51.100.10 192.0.2.1 6000 8883\r\nhello, not TLS\r\n"))
	if rec := accessRecord(t, h, "result=tls_error"); !strings.Contains(rec, "remote=198.51.100.10:6000") {
		t.Errorf("failed handshake's record: %s; want remote=198.51.100.10:6000 (the header's client)", rec)
	}
}

// TestUntrustedProxyHeaderNamed: a PROXY header from a peer the listener
// does not trust (a front load balancer left out of proxy_protocol.trusted,
// or a listener without proxy_protocol) is reported as such, on a TLS or
// WebSocket listener as on a plain one, v1 and v2: not as a failed
// handshake or a packet that is not MQTT.
func TestUntrustedProxyHeaderNamed(t *testing.T) {
	h, tlsAddr, plainAddr := proxiedTLSHarness(t, "")
	v1 := []byte("PROXY TCP4 198.51.100.20 192.0.2.1 7000 8883\r\n")
	v2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + // signature, PROXY, TCP4, 12 bytes
		"\xc6\x33\x64\x15\xc0\x00\x02\x01\x1b\x59\x22\xb3") // 198.51.100.21:7001 → 192.0.2.1:8883
	const notListed, noPP = "not in proxy_protocol.trusted", "the listener takes no PROXY headers (proxy_protocol)"
	for _, tc := range []struct {
		name, addr, from string
		hdr              []byte
		why              string
	}{
		{"tls v1", tlsAddr, "127.0.0.3", v1, notListed},
		{"tls v2", tlsAddr, "127.0.0.4", v2, notListed},
		{"plain v1", plainAddr, "127.0.0.5", v1, notListed},
		{"plain v2", plainAddr, "127.0.0.6", v2, notListed},
		{"websocket v1", h.lb.ListenerAddr("ws-pp"), "127.0.0.8", v1, notListed},
		{"no proxy_protocol", h.addr, "127.0.0.7", v1, noPP},
	} {
		c := dialFrom(t, tc.from, tc.addr, tc.hdr)
		if !closedWithin(c, 3*time.Second) {
			t.Errorf("%s: still open", tc.name)
		}
		rec := accessRecord(t, h, "remote="+tc.from+":")
		if !strings.Contains(rec, "result=proxy_untrusted") ||
			!strings.Contains(rec, `reason="PROXY header from an untrusted peer `+tc.from+`: `+tc.why+`"`) {
			t.Errorf("%s: %s; want result=proxy_untrusted, the reason naming the peer", tc.name, rec)
		}
	}
}
