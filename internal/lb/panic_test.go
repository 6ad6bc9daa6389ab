package lb

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// panicPolicy is a balance policy with a bug: it panics for client ids
// starting with "panic-" (a forced panic in a connection's path).
type panicPolicy struct{ servers []balance.Server }

func (p panicPolicy) Pick(c *balance.Conn, _ func(balance.Server) bool) balance.Server {
	if strings.HasPrefix(c.ClientID, "panic-") {
		panic("test: a bug in a policy")
	}
	return p.servers[0]
}

func init() {
	balance.Register("test_panic", func(s []balance.Server, _ balance.Options) (balance.Policy, error) {
		return panicPolicy{s}, nil
	})
}

// TestRecoveredPanicIsAccountedFor: a panic in one connection's path closes
// that connection and nothing else; it is counted once like any other end,
// so the client gauge goes back to zero and shutdown does not wait for the
// grace period.
func TestRecoveredPanicIsAccountedFor(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, upstream: "    balance: test_panic\n",
		top: "limits: { shutdown_grace: 20s }\n"})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: "panic-1", KeepAlive: 30}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Fatalf("got % x, %v; want the connection closed", got, err)
	}
	fine, err := connectV3(t, h.addr, "fine")
	if err != nil {
		t.Fatalf("another client after the panic: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(h.accessLog(), `client_id="panic-1"`) },
		"the panicked connection has its access-log line:\n%s", h.accessLog())
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(metricsText(t, h), "mqlb_client_connections 1\n")
	}, "one client connection open (fine), not two:\n%s", grepLines(metricsText(t, h), "mqlb_client_connections"))
	fine.Disconnect(50)
	h.waitIdle()
	start := time.Now()
	h.cancel()
	select {
	case <-h.done:
		h.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown still waiting 10s after SIGTERM with no connection but a panicked one")
	}
	t.Logf("shutdown took %v", time.Since(start))
}
