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
	var ms []*testutil.Mosquitto
	var servers []string
	for range 3 {
		m := testutil.StartMosquitto(t, "")
		ms, servers = append(ms, m), append(servers, m.Addr)
	}
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
	if limit := 3*time.Second + 500*time.Millisecond + 300*time.Millisecond; down > limit {
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
	if got := h.lb.Connections().List(id)[0].Server; got != "b1" {
		t.Errorf("served by %s, want b1", got)
	}
	if limit := 3*time.Second + 400*time.Millisecond; took > limit {
		t.Errorf("the client waited %v; want at most connack_timeout (3s) before another server", took)
	}
	for _, m := range ms[:3:3] {
		m.Signal(syscall.SIGCONT)
	}
}
