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

// takeIn waits until the load balancer has taken in all n connections of
// an attack: each one closed (and counted under its result) or pending in
// its handshake, none in between, and returns how many are pending. The
// attack's dials return as soon as the kernel has queued the connections;
// the LB accepts, gates and closes them after that, which under load can
// take a while. Until it has, those on their way out still count against
// max_connections, and handshakes scheduled late enter the pending queue
// after clients that came later: clients then race the attack's arrival,
// not the connections it holds.
func takeIn(t *testing.T, h *harness, n int) int {
	t.Helper()
	var p, a, f int
	if !testutil.WaitFor(15*time.Second, func() bool { // under the attack's connect_timeout (20s)
		p = h.lb.proxy.Pending()
		a = int(h.lb.proxy.Active())
		f = sumCounter(metricsText(t, h), "mqlb_connections_total{")
		return a == p && f+p == n && h.lb.proxy.Pending() == p
	}) {
		t.Fatalf("the LB did not take in the %d attack connections (each closed or pending): %d closed, %d pending, %d in any phase", n, f, p, a)
	}
	return p
}

// sumCounter adds up the samples of the metric lines starting with prefix.
func sumCounter(metrics, prefix string) int {
	n := 0
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, prefix) {
			var v float64
			fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v)
			n += int(v)
		}
	}
	return n
}

// TestHalfConnectsDoNotLockOthersOut: connections that never finish their
// CONNECT — 300 from one address, and 2 each from 60 others — cannot take
// the slots of max_connections from other clients: max_connections_per_ip
// closes one address's excess at accept, and max_pending closes the oldest
// handshakes when newer ones arrive. Without the two limits the same
// attack locks everyone out (checked first). The clients come once the LB
// has taken the attack in (takeIn), while it still holds all the
// handshakes max_pending lets it keep.
func TestHalfConnectsDoNotLockOthersOut(t *testing.T) {
	const attackConns = 300 + 60*2
	attack := func(t *testing.T, h *harness) (pending int) {
		holdHalfConnects(t, h.addr, "127.0.0.2", 300)
		for i := range 60 {
			holdHalfConnects(t, h.addr, fmt.Sprintf("127.0.1.%d", i+1), 2)
		}
		return takeIn(t, h, attackConns)
	}
	t.Run("limits off", func(t *testing.T) {
		h := newHarness(t, harnessOpts{brokers: 1, upstream: "    health_check: { type: none }\n",
			top: "limits: { connect_timeout: 20s, max_connections: 100, max_pending: 0 }\n"})
		if p := attack(t, h); p != attackConns {
			t.Fatalf("%d of the %d attack connections pending without limits", p, attackConns)
		}
		if ok, err := legitClients(h.addr, 20); ok != 0 {
			t.Fatalf("%d of 20 clients got in past the attack without limits (%v); the attack did not work", ok, err)
		}
	})
	h := newHarness(t, harnessOpts{brokers: 1, upstream: "    health_check: { type: none }\n",
		top: "limits: { connect_timeout: 20s, max_connections: 100, max_connections_per_ip: 20, max_pending: 50 }\n"})
	if p := attack(t, h); p != 50 {
		t.Errorf("%d attack connections pending, want max_pending 50", p)
	}
	if ok, err := legitClients(h.addr, 20); ok != 20 {
		t.Fatalf("%d of 20 clients got CONNACK 0 during the attack; first failure: %v (%d pending, %d in any phase)\n%s", ok, err,
			h.lb.proxy.Pending(), h.lb.proxy.Active(), grepLines(metricsText(t, h), "mqlb_connections_total"))
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		m := metricsText(t, h)
		return strings.Contains(m, `result="over_ip_limit"`) && strings.Contains(m, `result="over_pending_limit"`)
	}, "refusals counted as their own results:\n%s", grepLines(metricsText(t, h), "connections_total"))
	// Each client evicted at most one of the attack's 50 handshakes: the
	// rest were still held when the last client had its CONNACK.
	if p := h.lb.proxy.Pending(); p > 50 || p < 50-20 {
		t.Errorf("%d connections pending, want 30 to 50 (max_pending 50, less at most one per client)", p)
	}
}
