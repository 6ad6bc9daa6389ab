package lb

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
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
	return !strings.HasPrefix(cl.ID, "mqlb-health")
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

// TestHealthCheckClientIDPerServer: by default each server's check uses its
// own client id, so that the checks of the nodes of one cluster do not take
// each other's session over; a configured id without "{server}" is kept.
func TestHealthCheckClientIDPerServer(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2})
	for i, b := range h.brokers {
		want := fmt.Sprintf("mqlb-health-b%d", i)
		testutil.Eventually(t, 5*time.Second, func() bool { return len(b.ConnectsOf(want)) > 0 }, "check as %s", want)
		for _, c := range b.Connects() {
			if c.ClientID != want {
				t.Errorf("broker b%d saw a CONNECT from %q; want only %q", i, c.ClientID, want)
			}
		}
	}
	h = newHarness(t, harnessOpts{brokers: 1, upstream: "    health_check: { type: mqtt, interval: 100ms, client_id: probe }\n"})
	testutil.Eventually(t, 5*time.Second, func() bool { return len(h.brokers[0].ConnectsOf("probe")) > 0 }, "check as probe")
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
	connackOf(t, h.addr, mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "json-2", CleanStart: true, KeepAlive: 30}))
	record := func(id string) map[string]any {
		var rec map[string]any
		testutil.Eventually(t, 5*time.Second, func() bool {
			f, _ := os.Open(h.access)
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				rec = nil // a fresh map per line: Unmarshal keeps a map's other keys
				if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["client_id"] == id {
					return true
				}
			}
			return false
		}, "a JSON record for %s", id)
		return rec
	}
	// Like the text format, a record without a username says so.
	if u, ok := record("json-2")["username"]; !ok || u != "" {
		t.Errorf("json-2 (no username): username %v, %v; want \"\"", u, ok)
	}
	rec := record("json-1")
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

// declineHook answers CONNACK "server unavailable" to client ids starting
// with "decline-", like a node whose session registry is briefly unreadable.
type declineHook struct{ mqtt.HookBase }

func (declineHook) ID() string           { return "decline" }
func (declineHook) Provides(b byte) bool { return b == mqtt.OnConnect }
func (declineHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if !strings.HasPrefix(cl.ID, "decline-") {
		return nil
	}
	code := packets.ErrServerUnavailable.Code // v5 0x88
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.Err3ServerUnavailable.Code // v3 0x03
	}
	cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code})
	return packets.ErrServerUnavailable
}

// TestDeclinedAttemptTriesNextServer: a broker that declines a client with
// CONNACK "server unavailable" (v5 0x88, v3 0x03) sends it to the next
// server, and is not marked down for it.
func TestDeclinedAttemptTriesNextServer(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2, upstream: "    balance: client_id\n    health_check: { type: mqtt, interval: 1h, fall: 1 }\n"})
	if err := h.brokers[0].Server.AddHook(new(declineHook), nil); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v5", "v3"} {
		id := sameServerID(t, h, "b0", "decline-"+v)
		var err error
		if v == "v5" {
			var c *paho.Client
			if c, _, err = connectV5(t, h.addr, id, nil); err == nil {
				c.Disconnect(&paho.Disconnect{})
			}
		} else {
			_, err = connectV3(t, h.addr, id)
		}
		if err != nil || len(h.brokers[1].ConnectsOf(id)) != 1 {
			t.Errorf("%s client declined by b0: %v; CONNECTs seen by b0 %d, b1 %d", v, err,
				len(h.brokers[0].ConnectsOf(id)), len(h.brokers[1].ConnectsOf(id)))
		}
	}
	if b0 := h.lb.Upstreams().Get("brokers").Server("b0"); !b0.Healthy() || b0.Failures() != 0 {
		t.Errorf("b0 healthy %v failures %d after declining; want healthy, no failures", b0.Healthy(), b0.Failures())
	}
}
