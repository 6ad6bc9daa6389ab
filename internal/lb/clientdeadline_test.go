package lb

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestConnectTimeoutIsNotTheServers: a broker slower to answer than the
// client's limits.connect_timeout (1 s here, connack_timeout 3 s) is not
// charged a passive failure for it: it stays up with no failure counted
// (fall is 2: the two clients would take it down), and the clients are
// answered as for a connect_timeout that ran out under max_connect_rate:
// server busy (v5 0x89, v3 0x03), result busy.
func TestConnectTimeoutIsNotTheServers(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, brokerOpt: []testutil.BrokerOption{testutil.WithAuthHook(&testutil.SlowConnack{D: 2 * time.Second})},
		top: "limits: { connect_timeout: 1s, shutdown_grace: 5s }\n"})
	sv := h.lb.Upstreams().Get("brokers").Server("b0")
	for _, c := range []struct {
		version byte
		want    byte
	}{{mqttwire.V5, mqttwire.Code5ServerBusy}, {mqttwire.V311, mqttwire.Code3ServerUnavailable}} {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: c.version, CleanStart: true, ClientID: "slow-client", KeepAlive: 30}))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		rp, err := mqttwire.ReadConnack(conn, c.version, nil)
		conn.Close()
		if err != nil || rp.Code != c.want {
			t.Errorf("v%d client of a broker slower than connect_timeout: CONNACK 0x%02x (%v); want 0x%02x server busy", c.version, rp.Code, err, c.want)
		}
	}
	if sv.Failures() != 0 || !sv.Healthy() {
		t.Errorf("b0: failures %d healthy %v after CONNACK waits the clients' connect_timeout cut short; want 0, true", sv.Failures(), sv.Healthy())
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Count(h.accessLog(), "result=busy") == 2 },
		"two clients logged result=busy; access log:\n%s", h.accessLog())
	if _, ack := testutil.DialV311(t, h.addr, "quick", 5*time.Second); ack.ReasonCode != 0 {
		t.Errorf("a client the broker answers at once got CONNACK 0x%02x; want 0", ack.ReasonCode)
	}
}
