package lb

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestHungMosquitto: mosquitto processes behind the LB; one is SIGSTOPped
// (it accepts TCP, the kernel queues, nothing answers). With no client
// traffic the health checks mark it down within interval × fall (plus the
// last check's timeout and the schedule's jitter); a new client whose key
// maps to a hung broker it has not yet marked down costs one
// connack_timeout (default 3 s) before another server serves it.
func TestHungMosquitto(t *testing.T) {
	testutil.NeedCommand(t, "mosquitto")
	ms, servers := startMosquittos(t, 3)
	h := newHarness(t, harnessOpts{servers: servers, upstream: "    balance: client_id\n" +
		"    health_check: { type: mqtt, interval: 1s, timeout: 500ms, rise: 1, fall: 3 }\n",
		top: "limits: { connect_timeout: 10s, shutdown_grace: 5s }\n"})
	u := h.lb.Upstreams().Get("brokers")
	testutil.Eventually(t, 5*time.Second, func() bool { return u.Server("b0").Health().Successes > 0 }, "checked once")

	// No client traffic: b2 hangs and is marked down by the checks alone.
	if err := ms[2].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	hung := time.Now()
	testutil.Eventually(t, 10*time.Second, func() bool { return !u.Server("b2").Healthy() }, "hung b2 marked down")
	down := time.Since(hung)
	t.Logf("hung broker marked down by checks after %v (interval 1s × fall 3)", down.Round(10*time.Millisecond))
	if limit := 3*time.Second + 500*time.Millisecond + time.Second; down > limit { // a second of slack for a loaded machine
		t.Errorf("marked down after %v; want within interval × fall + timeout + jitter = %v", down, limit)
	}

	// A client for the hung b0, before the checks notice.
	id := ""
	for i := 0; id == ""; i++ {
		c := fmt.Sprintf("hung-%d", i)
		if u.Policy.(balance.Keyed).Home(&balance.Conn{ClientID: c}).Name() == "b0" {
			id = c
		}
	}
	if err := ms[0].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	openRaw(t, h.addr, id)
	took := time.Since(start)
	t.Logf("client for the hung broker served after %v", took.Round(10*time.Millisecond))
	if got := h.lb.Connections().List(id)[0].Record().Server; got != "b1" {
		t.Errorf("served by %s, want b1", got)
	}
	if limit := 3*time.Second + time.Second; took > limit { // a second of slack for a loaded machine; without the fix it is 10 s
		t.Errorf("the client waited %v; want at most connack_timeout (3s) before another server", took)
	}
	for _, m := range ms[:3:3] {
		m.Signal(syscall.SIGCONT)
	}
}

// TestMosquittoKilledPaced: 150 auto-reconnecting clients on three
// mosquitto processes; one is killed with SIGKILL. With max_connect_rate 20
// the clients it dropped reconnect to each survivor at no more than 20 per
// second (as the clients see their CONNACKs), and all are back.
func TestMosquittoKilledPaced(t *testing.T) {
	testutil.NeedCommand(t, "mosquitto")
	ms, servers := startMosquittos(t, 3)
	h := newHarness(t, harnessOpts{servers: servers, upstream: "    balance: client_id\n    max_connect_rate: 20\n",
		top: "limits: { connect_timeout: 5s, shutdown_grace: 5s }\n"})
	var ids []string
	for i := range 150 {
		ids = append(ids, fmt.Sprintf("kill-%d", i))
	}
	f := newFleet(t, h.addr, ids)
	testutil.Eventually(t, 30*time.Second, func() bool { return h.lb.Connections().Len() == 150 }, "150 clients relayed")
	killed := time.Now()
	if err := ms[1].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b1 := h.lb.Upstreams().Get("brokers").Server("b1")
	testutil.Eventually(t, 10*time.Second, func() bool { return b1.Active() == 0 }, "b1's clients dropped")
	testutil.Eventually(t, 30*time.Second, func() bool { return f.connected() == 150 && h.lb.Connections().Len() == 150 },
		"every client back: %d connected", f.connected())
	back := time.Since(killed)
	bySrv := map[string][]time.Time{}
	for id, ts := range f.connectsAfter(killed) {
		if c := h.lb.Connections().List(id); len(c) == 1 {
			srv := c[0].Record().Server
			bySrv[srv] = append(bySrv[srv], ts...)
		}
	}
	for srv, ts := range bySrv {
		peak := maxPerSecond(ts)
		t.Logf("%s took %d reconnects, at most %d in one second (all back in %v)", srv, len(ts), peak, back.Round(10*time.Millisecond))
		if peak > 22 { // 10% slack for the dials' scheduling jitter, as in TestReconnectStorm
			t.Errorf("%s took %d reconnects in one second; want at most 20 (+10%% for dial jitter)", srv, peak)
		}
	}
	if len(bySrv) != 2 || bySrv["b1"] != nil {
		t.Errorf("reconnects went to %d servers; want b0 and b2", len(bySrv))
	}
}

// startMosquittos starts n mosquitto processes and returns them with their
// addresses.
func startMosquittos(t *testing.T, n int) ([]*testutil.Mosquitto, []string) {
	var ms []*testutil.Mosquitto
	var servers []string
	for range n {
		m := testutil.StartMosquitto(t, "")
		ms, servers = append(ms, m), append(servers, m.Addr)
	}
	return ms, servers
}
