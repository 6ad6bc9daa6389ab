package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func parse(t *testing.T, servers string, extra string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte("listeners: [{ address: \"127.0.0.1:0\", upstream: u }]\nupstreams:\n  u:\n" + extra + "    servers:\n" + servers))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRiseAndFall(t *testing.T) {
	s := newServer("u", "s", "127.0.0.1:1", 1, quiet)
	boom := errors.New("boom")
	s.report(boom, 2, 3, true, 0)
	s.report(boom, 2, 3, true, 0)
	if !s.Healthy() {
		t.Fatal("down after 2 failures with fall 3")
	}
	s.report(boom, 2, 3, true, 0)
	if s.Healthy() || s.State() != StateDown || s.Available() {
		t.Fatal("still up after 3 failures")
	}
	s.report(nil, 2, 3, true, 0)
	if s.Healthy() {
		t.Fatal("up after 1 success with rise 2")
	}
	s.report(nil, 2, 3, true, 0)
	if !s.Healthy() || s.Health().LastError != "" {
		t.Fatalf("not up after 2 successes: %+v", s.Health())
	}
}

func TestOperatorStates(t *testing.T) {
	s := newServer("u", "s", "127.0.0.1:1", 1, quiet)
	for _, tc := range []struct {
		do    func()
		state State
		avail bool
	}{{s.Drain, StateDrain, false}, {s.Disable, StateDisabled, false}, {s.Enable, StateUp, true}} {
		tc.do()
		if s.State() != tc.state || s.Available() != tc.avail {
			t.Errorf("state %s available %v, want %s %v", s.State(), s.Available(), tc.state, tc.avail)
		}
	}
}

// TestStateChangedStamped: every change of State is dated, health flips
// and the operator's states alike; a check that changes nothing is not.
func TestStateChangedStamped(t *testing.T) {
	s := newServer("u", "s", "127.0.0.1:1", 1, quiet)
	if !s.StateChanged().IsZero() {
		t.Fatalf("new server: changed %v", s.StateChanged())
	}
	s.report(nil, 1, 1, true, 0)
	s.Enable()
	if !s.StateChanged().IsZero() {
		t.Fatalf("changed by a passing check or an enable of an enabled server: %v", s.StateChanged())
	}
	last := s.StateChanged()
	for i, step := range []func(){s.Drain, s.Enable, func() { s.report(errors.New("boom"), 1, 1, true, 0) },
		func() { s.report(nil, 1, 1, true, 0) }} {
		step()
		c := s.StateChanged()
		if c.IsZero() || c.Before(last) {
			t.Fatalf("step %d (state %s): changed %v, last %v", i, s.State(), c, last)
		}
		last = c
	}
}

// TestBuildReusesServers: a reload keeps the *Server (health, counts,
// operator state) of servers whose name and address are unchanged, applies a
// changed weight, and applies a config state only when the file changed it.
func TestBuildReusesServers(t *testing.T) {
	c1 := parse(t, "      - { name: a, address: \"127.0.0.1:1001\" }\n      - { name: b, address: \"127.0.0.1:1002\" }\n", "")
	set1, err := Build(c1, nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	a, b := set1.Get("u").Server("a"), set1.Get("u").Server("b")
	a.active.Add(3)
	b.Drain()
	c2 := parse(t, "      - { name: a, address: \"127.0.0.1:1001\", weight: 5 }\n      - { name: b, address: \"127.0.0.1:9999\" }\n      - { name: c, address: \"127.0.0.1:1003\", state: disabled }\n", "")
	set2, err := Build(c2, set1, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u := set2.Get("u")
	if u.Server("a") != a || a.Active() != 3 || a.Weight() != 5 {
		t.Errorf("a not reused with its count and new weight: same=%v active=%d weight=%d", u.Server("a") == a, a.Active(), a.Weight())
	}
	if u.Server("b") == b || u.Server("b").State() != StateDown {
		t.Errorf("b moved address: want a new server, down until its first check; got same=%v state %s", u.Server("b") == b, u.Server("b").State())
	}
	if u.Server("c").State() != StateDisabled {
		t.Errorf("c: state %s, want disabled from config", u.Server("c").State())
	}
	a.Drain()
	set3, _ := Build(c2, set2, nil, quiet)
	if set3.Get("u").Server("a").State() != StateDrain {
		t.Error("an operator's drain did not survive a reload with an unchanged file")
	}
}

// TestAddedServerCheckedFirst: a server added to a running upstream with
// health checks takes no client before a check passes, and one passing
// check is enough whatever rise is; a failed first check leaves it to rise.
// Without checks it is up at once, and servers at start are optimistic.
func TestAddedServerCheckedFirst(t *testing.T) {
	const servers = "      - { name: a, address: \"127.0.0.1:1001\" }\n"
	const added = servers + "      - { name: n, address: \"127.0.0.1:1002\" }\n"
	const hc = "    health_check: { type: mqtt, rise: 3, fall: 2 }\n"
	set1, err := Build(parse(t, servers, hc), nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if s := set1.Get("u").Server("a"); !s.Available() {
		t.Fatalf("a server at start: state %s, want up (optimistic)", s.State())
	}
	set2, _ := Build(parse(t, added, hc), set1, nil, quiet)
	n := set2.Get("u").Server("n")
	if n.Available() {
		t.Fatalf("added server before its first check: state %s, want down", n.State())
	}
	n.report(nil, 3, 2, true, 0)
	if !n.Available() {
		t.Fatalf("added server after a passing first check: state %s, want up (rise 3 not needed)", n.State())
	}

	set3, _ := Build(parse(t, added+"      - { name: m, address: \"127.0.0.1:1003\" }\n", hc), set2, nil, quiet)
	m := set3.Get("u").Server("m")
	m.report(errors.New("refused"), 3, 2, true, 0)
	m.report(nil, 3, 2, true, 0)
	if m.Available() {
		t.Fatal("added server whose first check failed: up after one success, want rise 3")
	}
	m.report(nil, 3, 2, true, 0)
	m.report(nil, 3, 2, true, 0)
	if !m.Available() {
		t.Fatalf("after rise successes: state %s", m.State())
	}

	noChecks := "    health_check: { type: none }\n"
	set4, _ := Build(parse(t, servers, noChecks), nil, nil, quiet)
	set5, _ := Build(parse(t, added, noChecks), set4, nil, quiet)
	if s := set5.Get("u").Server("n"); !s.Available() {
		t.Errorf("added without health checks: state %s, want up", s.State())
	}
}

// TestConnectRetriesAndPassiveFailures: a failing attempt (a server that
// closes before its CONNACK) counts against the server and the next one is
// tried; with checks off a downed server comes back after the interval.
// Each lease counts its connection on its server until Release.
func TestConnectRetriesAndPassiveFailures(t *testing.T) {
	dead, live := listen(t), testutil.StartMochi(t).Addr
	c := parse(t, "      - { name: dead, address: \""+dead+"\" }\n      - { name: live, address: \""+live+"\" }\n",
		"    balance: round_robin\n    connect_retries: 1\n    health_check: { type: none, fall: 1, interval: 100ms }\n")
	set, err := Build(c, nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u := set.Get("u")
	for i := range 4 {
		hs := &Handshake{Version: mqttwire.V311,
			Data: mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: fmt.Sprint("c", i), CleanStart: true})}
		var l Lease
		conn, rp, err := u.Connect(context.Background(), &l, hs)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		conn.Close()
		if l.Server().Name() != "live" || rp.Size != 4 || rp.Code != 0 {
			t.Fatalf("Connect: server %s, reply %+v", l.Server().Name(), rp)
		}
		if n := l.Server().Active(); n != 1 {
			t.Errorf("live counts %d connections during a lease, want 1", n)
		}
		l.Release(10, 20)
		l.Release(10, 20) // a second release changes nothing
	}
	d := u.Server("dead")
	if d.Failures() != 1 || d.Healthy() {
		t.Errorf("dead: failures %d healthy %v; want 1 failure and marked down (fall 1)", d.Failures(), d.Healthy())
	}
	testutil.Eventually(t, 5*time.Second, d.Healthy, "dead retried after the interval")
	lv := u.Server("live")
	if in, out := lv.ClosedBytes(); lv.Active() != 0 || in != 40 || out != 80 {
		t.Errorf("live: active %d, bytes %d/%d after releases; want 0, 40/80", lv.Active(), in, out)
	}
}

func listen(t *testing.T) string {
	return testutil.Serve(t, func(c net.Conn) { c.Close() })
}

func TestCheckClientID(t *testing.T) {
	for _, c := range []struct {
		id, name string
		version  int
		want     string
	}{
		{"mqlb-health-{server}", "node1", 4, "mqlb-health-node1"},
		{"probe", "node1", 4, "probe"},
		{"{server}/{server}", "n", 5, "n/n"},
		{"mqlb-health-{server}", "127.0.0.1:18831", 4, "mqlb-health-127.0.0.1:18831"},
		{"mqlb-health-{server}", "127.0.0.1:18831", 3, "mqlb-health-127.0.0.1:1"}, // MQTT 3.1: 23 bytes
		{"mqlb-health-{server}", "nœud-1234567", 3, "mqlb-health-nœud-12345"},
		{"mqlb-health-{server}", "1234567890œ", 3, "mqlb-health-1234567890"}, // not inside a character
	} {
		hc := config.HealthCheck{ClientID: c.id, ProtocolVersion: c.version}
		if got := checkClientID(hc, c.name); got != c.want {
			t.Errorf("checkClientID(%q, %q, v%d) = %q; want %q", c.id, c.name, c.version, got, c.want)
		}
	}
}

// TestRemovedServerAddedBack: a server removed while it has connections is
// kept aside with them (Removed, RemovedServer) until they close; added
// back with its name and address it is the same server, its connections
// counted on it (a new one would count 0 while they live), down until its
// first check passes as any added server. Added back at another address
// it is a new server and the old one stays aside. Reload and the runtime
// API both go through Build.
func TestRemovedServerAddedBack(t *testing.T) {
	a, b := testutil.StartMochi(t).Addr, testutil.StartMochi(t).Addr
	both := "      - { name: a, address: \"" + a + "\" }\n      - { name: b, address: \"" + b + "\" }\n"
	onlyA := "      - { name: a, address: \"" + a + "\" }\n"
	const hc = "    balance: round_robin\n    health_check: { type: tcp, rise: 2 }\n"
	set1, err := Build(parse(t, both, hc), nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	u1 := set1.Get("u")
	var leases []*Lease
	for i := range 4 {
		l := new(Lease)
		conn, _, err := u1.Connect(context.Background(), l, connectOf(fmt.Sprint("c", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		leases = append(leases, l)
	}
	sb := u1.Server("b")
	if sb.Active() != 2 {
		t.Fatalf("b holds %d connections, want 2", sb.Active())
	}

	set2, _ := Build(parse(t, onlyA, hc), set1, nil, quiet)
	u2 := set2.Get("u")
	if u2.Server("b") != nil || len(u2.Removed()) != 1 || u2.Removed()[0] != sb || u2.RemovedServer("b") != sb || sb.Active() != 2 {
		t.Fatalf("removed b with 2 connections: Server %v, Removed %v, RemovedServer %v, active %d", u2.Server("b"), u2.Removed(), u2.RemovedServer("b"), sb.Active())
	}

	set3, _ := Build(parse(t, both, hc), set2, nil, quiet)
	u3 := set3.Get("u")
	if got := u3.Server("b"); got != sb || got.Active() != 2 || len(u3.Removed()) != 0 {
		t.Fatalf("b added back: same server %v, active %d (want 2: its connections live), removed %v", got == sb, u3.Server("b").Active(), u3.Removed())
	}
	if sb.State() != StateDown {
		t.Errorf("b added back: state %s, want down until its first check", sb.State())
	}
	sb.report(nil, 2, 3, true, 0)
	if !sb.Available() {
		t.Errorf("b added back: state %s after a passing first check, want up", sb.State())
	}

	// At another address: a new server; the old one stays aside.
	moved := "      - { name: a, address: \"" + a + "\" }\n      - { name: b, address: \"127.0.0.1:1\" }\n"
	set4, _ := Build(parse(t, moved, hc), set3, nil, quiet)
	u4 := set4.Get("u")
	if u4.Server("b") == sb || u4.Server("b").Active() != 0 || u4.RemovedServer("b") != sb {
		t.Fatalf("b moved: new server %v, its active %d, removed b %v", u4.Server("b") != sb, u4.Server("b").Active(), u4.RemovedServer("b"))
	}

	// Once its connections closed, it is forgotten.
	for _, l := range leases {
		l.Release(0, 0)
	}
	if len(u4.Removed()) != 0 || u4.RemovedServer("b") != nil {
		t.Errorf("removed b without connections still listed: %v", u4.Removed())
	}
	set5, _ := Build(parse(t, moved, hc), set4, nil, quiet)
	if len(set5.Get("u").removed) != 0 {
		t.Errorf("removed b without connections kept by a rebuild")
	}
}
