package lb

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// refuseHealth accepts everyone but the health check's client id.
type refuseHealth struct{ mqtt.HookBase }

func (refuseHealth) ID() string { return "refuse-health" }
func (refuseHealth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (refuseHealth) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return cl.ID != "mqlb-health"
}
func (refuseHealth) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// TestHealthCheckRefusingConnackIsFailure: a broker that answers the check's
// CONNECT with a refusal is marked down, with the code in the API's error.
func TestHealthCheckRefusingConnackIsFailure(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, brokerOpt: []testutil.BrokerOption{testutil.WithAuthHook(&refuseHealth{})}})
	srv := h.lb.Upstreams().Get("brokers").Server("b0")
	testutil.Eventually(t, 5*time.Second, func() bool { return !srv.Healthy() }, "refusing broker marked down")
	if e := srv.Health().LastError; !strings.Contains(e, "CONNACK refused with code 0x") {
		t.Errorf("last error %q; want the CONNACK code", e)
	}
	if got := rawConnect(t, h.addr, 5, "client"); string(got) != "\x20\x03\x00\x88\x00" {
		t.Errorf("client of a down upstream got % x; want 0x88", got)
	}
}

// TestJSONAccessLog: one JSON object per connection with the documented
// fields, and never the password.
func TestJSONAccessLog(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	h.write(strings.Replace(h.yaml([]string{h.brokers[0].Addr}, harnessOpts{}), "access_log: { path:", "access_log: { format: json, path:", 1))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 5, ClientID: "json-1", CleanStart: true, KeepAlive: 30,
		Username: "alice", HasUsername: true, Password: []byte("hunter2"), HasPassword: true})
	connackOf(t, h.addr, pkt)
	var rec map[string]any
	testutil.Eventually(t, 5*time.Second, func() bool {
		f, _ := os.Open(h.access)
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["client_id"] == "json-1" {
				return true
			}
		}
		return false
	}, "a JSON record for json-1")
	for _, k := range []string{"time", "remote", "listener", "username", "protocol", "server", "bytes_in", "bytes_out", "duration", "result", "reason"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("record lacks %q: %v", k, rec)
		}
	}
	if rec["username"] != "alice" || rec["protocol"] != float64(5) || rec["result"] != "ok" {
		t.Errorf("record %v", rec)
	}
	if b, _ := os.ReadFile(h.access); strings.Contains(string(b), "hunter2") {
		t.Error("the password appears in the access log")
	}
}
