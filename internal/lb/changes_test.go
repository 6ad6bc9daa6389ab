package lb

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestRebalanceScaleOut: 400 clients on three servers; a fourth joins by
// reload. With rebalance.rate 40 every server is within 10% of 100 in 20 s,
// no one-second window has more than 40 moves, and only clients whose key
// now maps to another server were moved: those of the new server, and any
// the load bound had placed off their key's server while they connected.
func TestRebalanceScaleOut(t *testing.T) {
	h := newHarness(t, harnessOpts{upstream: "    balance: client_id\n    rebalance: { rate: 40, tolerance: 0.1, min_age: 500ms }\n"})
	ids := evenIDs(t, []string{"b0", "b1", "b2", "b3"}, 400)
	f := newFleet(t, h.addr, ids)
	testutil.Eventually(t, 10*time.Second, func() bool { return h.lb.Connections().Len() == 400 }, "400 clients relayed")
	mv := watchMoves(h)
	before := map[string]string{} // client → server, and whether on its key's
	offHome := map[string]bool{}
	keyed3 := h.lb.Upstreams().Get("brokers").Policy.(balance.Keyed)
	for _, c := range h.lb.Connections().All() {
		r := c.Record()
		before[r.ClientID] = r.Server
		offHome[r.ClientID] = keyed3.Home(&balance.Conn{ClientID: r.ClientID}).Name() != r.Server
	}

	b3 := testutil.StartMochi(t)
	h.brokers = append(h.brokers, b3)
	var addrs []string
	for _, b := range h.brokers {
		addrs = append(addrs, b.Addr)
	}
	h.write(h.yaml(addrs, harnessOpts{upstream: "    balance: client_id\n    rebalance: { rate: 40, tolerance: 0.1, min_age: 500ms }\n"}))
	start := time.Now()
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	var last map[string]int64
	if !testutil.WaitFor(20*time.Second, func() bool {
		last = perServer(h)
		for _, n := range last {
			if n < 90 || n > 110 {
				return false
			}
		}
		return f.connected() == 400
	}) {
		t.Fatalf("not every server within 10%% of 100 after 20s: %v", last)
	}
	t.Logf("balanced after %v: %v, %d moved", time.Since(start).Round(10*time.Millisecond), last, len(mv.all()))
	if n := maxPerSecond(mv.all()); n > 40 {
		t.Errorf("%d moves in one second; want at most 40", n)
	}
	keyed := h.lb.Upstreams().Get("brokers").Policy.(balance.Keyed)
	for _, id := range f.lostIDs() {
		if home := keyed.Home(&balance.Conn{ClientID: id}).Name(); home != "b3" && !offHome[id] {
			t.Errorf("client %s was moved off %s, its key's server, to %s", id, before[id], home)
		}
	}
	st := h.lb.Rebalance().State("brokers")
	if st.Moved == 0 || st.Rate != 40 {
		t.Errorf("rebalance state %+v", st)
	}
	moved := len(mv.all())
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Count(h.accessLog(), `reason="rebalanced"`) == moved },
		"%d moves, %d logged reason=\"rebalanced\"", moved, strings.Count(h.accessLog(), `reason="rebalanced"`))
	if n := strings.Count(h.accessLog(), `reason="closed"`); n != 0 {
		t.Errorf("%d connections logged reason=\"closed\" (shutdown) before any shutdown", n)
	}
}

// TestEvacuate: POST .../evacuate?rate=25 drains a server and closes its
// connections at 25 per second until none is left; the API reports
// progress and the clients are back on the other servers.
func TestEvacuate(t *testing.T) {
	h := newHarness(t, harnessOpts{upstream: "    balance: least_conn\n"})
	var ids []string
	for i := range 150 {
		ids = append(ids, fmt.Sprintf("ev-%d", i))
	}
	f := newFleet(t, h.addr, ids)
	testutil.Eventually(t, 10*time.Second, func() bool { return h.lb.Connections().Len() == 150 }, "150 clients relayed")
	mv := watchMoves(h)
	base := "http://" + h.admin + "/api/v1/upstreams/brokers/servers/b0/evacuate"
	if code, body := apiDo(t, "POST", base+"?rate=0", ""); code != 400 {
		t.Errorf("rate 0: %d %s", code, body)
	}
	if code, body := apiDo(t, "POST", "http://"+h.admin+"/api/v1/upstreams/brokers/servers/nope/evacuate?rate=5", ""); code != 404 {
		t.Errorf("unknown server: %d %s", code, body)
	}
	start := time.Now()
	code, body := apiDo(t, "POST", base+"?rate=25", "")
	var ev struct {
		Status             string
		Initial, Remaining int64
		Moved              int
	}
	if err := json.Unmarshal([]byte(body), &ev); err != nil || code != 202 || ev.Status != "running" || ev.Initial < 40 {
		t.Fatalf("evacuate: %d %v %s", code, err, body)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		_, body := apiDo(t, "GET", base, "")
		json.Unmarshal([]byte(body), &ev)
		return ev.Status == "done"
	}, "evacuation done: %+v", ev)
	took := time.Since(start)
	t.Logf("evacuated %d connections in %v", ev.Initial, took.Round(10*time.Millisecond))
	if min := time.Duration(float64(ev.Initial-1) / 25 * float64(time.Second)); took < min {
		t.Errorf("evacuated %d in %v; at 25/s it takes at least %v", ev.Initial, took, min)
	}
	if n := maxPerSecond(mv.all()); n > 25 {
		t.Errorf("%d closes in one second; want at most 25", n)
	}
	if ev.Remaining != 0 || ev.Moved < int(ev.Initial) {
		t.Errorf("progress at the end: %+v", ev)
	}
	sv := h.lb.Upstreams().Get("brokers").Server("b0")
	if sv.State().String() != "drain" || sv.Active() != 0 {
		t.Errorf("b0: state %s, %d active", sv.State(), sv.Active())
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return f.connected() == 150 && h.lb.Connections().Len() == 150 }, "every client back")
	moved := len(mv.all())
	testutil.Eventually(t, 5*time.Second, func() bool { return moved > 0 && strings.Count(h.accessLog(), `reason="evacuated"`) == moved },
		"%d closes, %d logged reason=\"evacuated\"", moved, strings.Count(h.accessLog(), `reason="evacuated"`))
	if n := strings.Count(h.accessLog(), `reason="closed"`); n != 0 {
		t.Errorf("%d connections logged reason=\"closed\" (shutdown) before any shutdown", n)
	}
	code, body = apiDo(t, "GET", "http://"+h.admin+"/api/v1/upstreams/brokers", "")
	if code != 200 || !strings.Contains(body, `"evacuations"`) || !strings.Contains(body, `"status": "off"`) {
		t.Errorf("GET upstream: %d %s", code, body)
	}
}

// TestSlowStart: a server added by reload with slow_start 3s takes a small
// share of new connections at first and a growing one over the window —
// with least_conn, which without slow start sends it every new connection
// until it catches up, and with client_id (no load bound: the keys' own
// spread), whose keys are admitted to it progressively.
func TestSlowStart(t *testing.T) {
	for _, tc := range []struct {
		policy      string
		first, grow float64 // the first half second's share at most; how much the share grows at least
	}{{"least_conn", 0.3, 0.2}, {"client_id", 0.15, 0.1}} {
		t.Run(tc.policy, func(t *testing.T) {
			opts := harnessOpts{brokers: 2, upstream: "    balance: " + tc.policy + "\n    load_factor: 0\n    slow_start: 3s\n"}
			h := newHarness(t, opts)
			for i := range 60 {
				openRaw(t, h.addr, fmt.Sprintf("ss-old-%d", i))
			}
			h.brokers = append(h.brokers, testutil.StartMochi(t))
			h.write(h.yaml([]string{h.brokers[0].Addr, h.brokers[1].Addr, h.brokers[2].Addr}, opts))
			if err := h.lb.Reload(); err != nil {
				t.Fatal(err)
			}
			const windows, per = 6, 60
			var n, onNew, share [windows]float64
			tick := time.NewTicker(500 * time.Millisecond / per)
			defer tick.Stop()
			start := time.Now()
			for i := 0; time.Since(start) < windows*500*time.Millisecond; i++ {
				<-tick.C
				w := int(time.Since(start) / (500 * time.Millisecond))
				id := fmt.Sprintf("ss-%s-%d", tc.policy, i)
				openRaw(t, h.addr, id)
				if w < windows {
					n[w]++
					if h.lb.Connections().List(id)[0].Record().Server == "b2" {
						onNew[w]++
					}
				}
			}
			for i := range share {
				share[i] = onNew[i] / max(n[i], 1)
			}
			t.Logf("%s: share of new connections on the new server per 0.5 s: %.2f", tc.policy, share)
			// Grown: the best later window, not the last ones: least_conn
			// sends the new server less again once its count has caught up
			// (0.08 0.30 0.52 0.68 0.40 0.33 in one CI run failed on the
			// average of the last two).
			first, grown := (share[0]+share[1])/2, slices.Max(share[2:])
			if share[0] > tc.first || grown-first < tc.grow {
				t.Errorf("the new server's share did not start small and grow: %.2f", share)
			}
		})
	}
}

// TestReconnectStorm: 1,000 auto-reconnecting clients on three brokers;
// one broker dies. With max_connect_rate 100 no survivor sees more than
// 100 new connections in any second, and every client is back.
// MQLB_STORM_RATE overrides the rate (0: no pacing) to measure the storm.
func TestReconnectStorm(t *testing.T) {
	rate := "100"
	if v := os.Getenv("MQLB_STORM_RATE"); v != "" {
		rate = v
	}
	h := newHarness(t, harnessOpts{upstream: "    balance: client_id\n    max_connect_rate: " + rate + "\n",
		top: "limits: { connect_timeout: 5s, shutdown_grace: 5s }\n"})
	var ids []string
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("storm-%d", i))
	}
	f := newFleet(t, h.addr, ids)
	testutil.Eventually(t, 30*time.Second, func() bool { return h.lb.Connections().Len() == 1000 }, "1000 clients relayed")
	killed := time.Now()
	h.brokers[0].Stop()
	b0 := h.lb.Upstreams().Get("brokers").Server("b0")
	testutil.Eventually(t, 10*time.Second, func() bool { return b0.Active() == 0 }, "b0's clients dropped")
	testutil.Eventually(t, 30*time.Second, func() bool { return f.connected() == 1000 && h.lb.Connections().Len() == 1000 },
		"every client back: %d connected", f.connected())
	back := time.Since(killed)
	for _, b := range h.brokers[1:] {
		var ts []time.Time
		for _, c := range b.Connects() {
			if c.At.After(killed) && !strings.HasPrefix(c.ClientID, "mqlb-health") {
				ts = append(ts, c.At)
			}
		}
		peak := maxPerSecond(ts)
		t.Logf("max_connect_rate %s: %d new connections, at most %d in one second; all back in %v", rate, len(ts), peak, back.Round(10*time.Millisecond))
		// The pacer grants turns at least 1/rate apart; what the broker sees
		// also carries each dial's scheduling delay, which on a loaded 2-core
		// machine under -race can bunch a few accepts: 10% slack for that.
		if rate != "0" && peak > 110 {
			t.Errorf("a survivor took %d new connections in one second; want at most 100 (+10%% for dial jitter)", peak)
		}
	}
}

// TestConnectRateBusy: with max_connect_rate 4 on one server and a 1 s
// connect_timeout, a burst of clients queues; those whose turn comes in
// time are served, the others get CONNACK server busy (v5 0x89, v3 0x03),
// counted as result busy.
func TestConnectRateBusy(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, upstream: "    balance: round_robin\n    max_connect_rate: 4\n",
		top: "limits: { connect_timeout: 1s, shutdown_grace: 5s }\n"})
	type answer struct {
		version, code byte
		err           error
	}
	answers := make(chan answer, 12)
	start := time.Now()
	for i := range 12 {
		version := byte(mqttwire.V5)
		if i%2 == 1 {
			version = mqttwire.V311
		}
		go func() {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer c.Close()
			c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: version, CleanStart: true, ClientID: fmt.Sprintf("busy-%d", i), KeepAlive: 30}))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			rp, err := mqttwire.ReadConnack(c, version, nil)
			answers <- answer{version, rp.Code, err}
		}()
	}
	served, busy := 0, 0
	for range 12 {
		a := <-answers
		switch {
		case a.err != nil:
			t.Errorf("v%d client: %v", a.version, a.err)
		case a.code == 0:
			served++
		case a.version == mqttwire.V5 && a.code == mqttwire.Code5ServerBusy,
			a.version == mqttwire.V311 && a.code == mqttwire.Code3ServerUnavailable:
			busy++
		default:
			t.Errorf("v%d client: CONNACK 0x%02x", a.version, a.code)
		}
	}
	t.Logf("%d served, %d busy in %v", served, busy, time.Since(start).Round(10*time.Millisecond))
	if served < 3 || served > 5 || busy != 12-served {
		t.Errorf("%d served and %d busy; want the 4 or so whose turn came within 1 s served, the rest busy", served, busy)
	}
	_, metrics := apiDo(t, "GET", "http://"+h.admin+"/metrics", "")
	for _, want := range []string{fmt.Sprintf(`mqlb_connections_total{listener="mqtt",result="busy"} %d`, busy),
		`mqlb_connect_queue_length{upstream="brokers"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
