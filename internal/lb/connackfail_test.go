package lb

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// heldBroker is a raw TCP server that reads a client's CONNECT and answers
// CONNACK 0 only when told to.
type heldBroker struct {
	addr    string
	gotConn chan net.Conn
}

func startHeldBroker(t *testing.T) *heldBroker {
	b := &heldBroker{gotConn: make(chan net.Conn, 1)}
	b.addr = testutil.Serve(t, func(c net.Conn) {
		t.Cleanup(func() { c.Close() })
		buf := make([]byte, 256)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err == nil && n > 0 && buf[0] == 0x10 {
			b.gotConn <- c
		}
	})
	return b
}

// TestClientGoneBeforeConnackCountedOnce: a client that resets its
// connection while the broker is still deciding is counted once (not "ok"
// and then again), and its server is released.
func TestClientGoneBeforeConnackCountedOnce(t *testing.T) {
	b := startHeldBroker(t)
	h := newHarness(t, harnessOpts{servers: []string{b.addr}, upstream: "    health_check: { type: none }\n"})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: "gone", KeepAlive: 30}))
	var srv net.Conn
	select {
	case srv = <-b.gotConn:
	case <-time.After(5 * time.Second):
		t.Fatal("the CONNECT did not reach the broker")
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close() // a reset: the LB's write of the CONNACK fails
	srv.Write(mqttwire.AppendConnack(nil, 4, false, 0))
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), `client_id="gone"`) },
		"access log line for the client")
	total := regexp.MustCompile(`(?m)^mqlb_connections_total\{listener="mqtt",result="([a-z_]+)"\} (\d+)$`)
	m := total.FindAllStringSubmatch(metricsText(t, h), -1)
	if len(m) != 1 || m[0][2] != "1" || m[0][1] == "ok" {
		t.Errorf("connections_total: %q; want one connection, not ok\naccess log:\n%s", m, h.accessLog())
	}
	if n := h.lb.Upstreams().Get("brokers").Server("b0").Active(); n != 0 {
		t.Errorf("server still counts %d connections", n)
	}
}
