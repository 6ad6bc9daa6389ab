package lb

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// holdHalfConnects opens n connections from local address from (an IP on
// the loopback) to addr, each sending half a CONNECT and nothing more, and
// returns them.
func holdHalfConnects(t *testing.T, addr, from string, n int) []net.Conn {
	t.Helper()
	half := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "slowloris", CleanStart: true, KeepAlive: 30})
	half = half[:len(half)/2]
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	var held []net.Conn
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial from %s: %v", from, err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(half)
		held = append(held, c)
	}
	return held
}

// legitClients connects n clients from 127.0.0.1 at once and returns how
// many got CONNACK 0 and the first failure.
func legitClients(addr string, n int) (int, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, first := 0, error(nil)
	for i := range n {
		wg.Go(func() {
			err := connectOnce(addr, fmt.Sprint("legit-", i))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else if first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	return ok, first
}

// TestHalfConnectsDoNotLockOthersOut: connections that never finish their
// CONNECT — 300 from one address, and 2 each from 60 others — cannot take
// the slots of max_connections from other clients: max_connections_per_ip
// closes one address's excess at accept, and max_pending closes the oldest
// handshakes when newer ones arrive. Without the two limits the same
// attack locks everyone out (checked first).
func TestHalfConnectsDoNotLockOthersOut(t *testing.T) {
	attack := func(t *testing.T, h *harness) {
		holdHalfConnects(t, h.addr, "127.0.0.2", 300)
		for i := range 60 {
			holdHalfConnects(t, h.addr, fmt.Sprintf("127.0.1.%d", i+1), 2)
		}
	}
	t.Run("limits off", func(t *testing.T) {
		h := newHarness(t, harnessOpts{brokers: 1, upstream: "    health_check: { type: none }\n",
			top: "limits: { connect_timeout: 20s, max_connections: 100, max_pending: 0 }\n"})
		attack(t, h)
		if ok, err := legitClients(h.addr, 20); ok != 0 {
			t.Fatalf("%d of 20 clients got in past the attack without limits (%v); the attack did not work", ok, err)
		}
	})
	h := newHarness(t, harnessOpts{brokers: 1, upstream: "    health_check: { type: none }\n",
		top: "limits: { connect_timeout: 20s, max_connections: 100, max_connections_per_ip: 20, max_pending: 50 }\n"})
	attack(t, h)
	if ok, err := legitClients(h.addr, 20); ok != 20 {
		t.Fatalf("%d of 20 clients got CONNACK 0 during the attack; first failure: %v", ok, err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		m := metricsText(t, h)
		return strings.Contains(m, `result="over_ip_limit"`) && strings.Contains(m, `result="over_pending_limit"`)
	}, "refusals counted as their own results:\n%s", grepLines(metricsText(t, h), "connections_total"))
	if p := h.lb.proxy.Pending(); p > 50 {
		t.Errorf("%d connections pending, over max_pending 50", p)
	}
}
