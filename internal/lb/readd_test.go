package lb

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
	"github.com/mqlb/mqlb/internal/upstream"
)

// TestServerRemovedAndAddedBack: a server removed through the runtime API
// while it holds connections, then added back with the same name and
// address, counts its live connections again, so least_conn does not send
// it every new client as if it were empty (the audit's 102 live, 0 shown);
// meanwhile they are listed as the upstream's removed servers. A reload
// removing and re-adding it does the same.
func TestServerRemovedAndAddedBack(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 3, upstream: "    balance: least_conn\n"})
	for i := range 6 {
		openRaw(t, h.addr, fmt.Sprint("live-", i))
	}
	u := func() *upstream.Upstream { return h.lb.Upstreams().Get("brokers") }
	testutil.Eventually(t, 5*time.Second, func() bool { return u().Server("b2").Active() == 2 }, "b2 holds 2 of 6")
	b2 := u().Server("b2")
	addr := b2.Address()

	for _, step := range []struct {
		name          string
		remove, readd func() error
	}{
		{"runtime API", func() error { return h.lb.RemoveServer(context.Background(), "brokers", "b2") },
			func() error {
				return h.lb.AddServer(context.Background(), "brokers", config.Server{Name: "b2", Address: addr})
			}},
		{"reload", func() error {
			h.write(h.yaml([]string{h.brokers[0].Addr, h.brokers[1].Addr}, harnessOpts{upstream: "    balance: least_conn\n"}))
			return h.lb.Reload()
		}, func() error {
			h.write(h.yaml([]string{h.brokers[0].Addr, h.brokers[1].Addr, addr}, harnessOpts{upstream: "    balance: least_conn\n"}))
			return h.lb.Reload()
		}},
	} {
		if err := step.remove(); err != nil {
			t.Fatalf("%s: remove: %v", step.name, err)
		}
		if u().Server("b2") != nil || u().RemovedServer("b2") != b2 || b2.Active() != 2 {
			t.Fatalf("%s: removed b2: server %v, removed %v, active %d; want it set aside with its 2", step.name, u().Server("b2"), u().Removed(), b2.Active())
		}
		if err := step.readd(); err != nil {
			t.Fatalf("%s: add back: %v", step.name, err)
		}
		if got := u().Server("b2"); got == nil || got.Active() != 2 || len(u().Removed()) != 0 {
			t.Fatalf("%s: b2 added back with 2 live connections counts %d, removed %v", step.name, got.Active(), u().Removed())
		}
		testutil.Eventually(t, 5*time.Second, u().Server("b2").Available, "%s: b2 up after its first check", step.name)
	}

	// 2/2/2 by the real counts: three new clients go one to each server.
	for i := range 3 {
		openRaw(t, h.addr, fmt.Sprint("new-", i))
	}
	for _, s := range u().Servers {
		if s.Active() != 3 {
			t.Errorf("%s: %d connections after 3 new clients on 2/2/2 under least_conn, want 3", s.Name(), s.Active())
		}
	}
}

// TestRemovedServerShownAndEvacuated: a server removed through the runtime
// API while it holds connections is listed under the upstream's "removed"
// (GET /api/v1/upstreams and /api/v1/upstreams/{u}) with its live count, so
// the sums of active connections stay whole; POST …/evacuate on it closes
// its connections at the rate (it was a 404) and ends when none is left,
// the server then gone from the API.
func TestRemovedServerShownAndEvacuated(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 3, upstream: "    balance: least_conn\n"})
	var clients []*rawClient
	for i := range 6 {
		clients = append(clients, openRaw(t, h.addr, fmt.Sprint("rm-", i)))
	}
	u := func() *upstream.Upstream { return h.lb.Upstreams().Get("brokers") }
	testutil.Eventually(t, 5*time.Second, func() bool { return u().Server("b2").Active() == 2 }, "b2 holds 2 of 6")
	b2 := u().Server("b2")
	base := "http://" + h.admin + "/api/v1/upstreams"
	if code, body := apiDo(t, "DELETE", base+"/brokers/servers/b2", ""); code != 200 {
		t.Fatalf("remove b2: %d %s", code, body)
	}

	type upJSON struct {
		Name    string
		Servers []struct{ Active int64 }
		Removed []struct {
			Name, Address string
			Active        int64
		}
	}
	sum := func(u upJSON) (n int64) {
		for _, s := range u.Servers {
			n += s.Active
		}
		for _, s := range u.Removed {
			n += s.Active
		}
		return n
	}
	var list struct{ Upstreams []upJSON }
	var one upJSON
	if code, body := apiDo(t, "GET", base, ""); code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Upstreams) != 1 {
		t.Fatalf("GET upstreams: %d %s", code, body)
	}
	if code, body := apiDo(t, "GET", base+"/brokers", ""); code != 200 || json.Unmarshal([]byte(body), &one) != nil {
		t.Fatalf("GET upstream: %d %s", code, body)
	}
	for what, got := range map[string]upJSON{"list": list.Upstreams[0], "one": one} {
		if len(got.Removed) != 1 || got.Removed[0].Name != "b2" || got.Removed[0].Address != b2.Address() || got.Removed[0].Active != 2 || sum(got) != 6 {
			t.Errorf("%s: removed %+v, %d active in all; want b2 at %s with 2, 6 in all", what, got.Removed, sum(got), b2.Address())
		}
	}

	evac := base + "/brokers/servers/b2/evacuate"
	code, body := apiDo(t, "POST", evac+"?rate=20", "")
	if code != 202 || !strings.Contains(body, `"status": "running"`) || !strings.Contains(body, `"initial": 2`) {
		t.Fatalf("evacuate removed b2: %d %s", code, body)
	}
	var ev struct {
		Status    string
		Moved     int
		Remaining int64
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, body := apiDo(t, "GET", evac, "")
		json.Unmarshal([]byte(body), &ev)
		return ev.Status == "done"
	}, "evacuation of removed b2 done: %+v", ev)
	if ev.Moved != 2 || ev.Remaining != 0 || b2.Active() != 0 || len(u().Removed()) != 0 {
		t.Errorf("after: %+v, b2 active %d, removed %v", ev, b2.Active(), u().Removed())
	}
	closed := 0
	for _, c := range clients {
		if c.alive() != nil {
			closed++
		}
	}
	if closed != 2 {
		t.Errorf("%d clients closed; want b2's 2", closed)
	}
	if _, body := apiDo(t, "GET", base+"/brokers", ""); strings.Contains(body, `"removed"`) {
		t.Errorf("b2 still listed as removed once evacuated: %s", body)
	}
	if code, body := apiDo(t, "POST", evac, ""); code != 404 {
		t.Errorf("evacuate b2 with no connection left: %d %s, want 404", code, body)
	}
}

// TestReaddedServerKeptByReload: a file's server removed through the
// runtime API, evacuated while removed and added back with its name and
// address is one of the upstream's servers again: a reload of the
// unchanged file leaves it there (the audit's "unrelated SIGHUP evacuates
// it"), and its evacuation stops at the re-add instead of closing every
// connection it had listed (it went on at its rate until none was left).
func TestReaddedServerKeptByReload(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 3, upstream: "    balance: least_conn\n"})
	for i := range 12 {
		openRaw(t, h.addr, fmt.Sprint("keep-", i))
	}
	u := func() *upstream.Upstream { return h.lb.Upstreams().Get("brokers") }
	testutil.Eventually(t, 5*time.Second, func() bool { return u().Server("b2").Active() == 4 }, "b2 holds 4 of 12")
	b2 := u().Server("b2")
	base := "http://" + h.admin + "/api/v1/upstreams/brokers/servers"
	if code, body := testutil.HTTP(t, "DELETE", base+"/b2", ""); code != 200 {
		t.Fatalf("remove b2: %d %s", code, body)
	}
	if code, body := testutil.HTTP(t, "POST", base+"/b2/evacuate?rate=1", ""); code != 202 {
		t.Fatalf("evacuate removed b2: %d %s", code, body)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return b2.Active() == 3 }, "the evacuation's first close")
	if code, body := testutil.HTTP(t, "POST", base, fmt.Sprintf(`{"name":"b2","address":%q}`, b2.Address())); code != 201 {
		t.Fatalf("add b2 back: %d %s", code, body)
	}
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	if u().Server("b2") != b2 || len(u().Removed()) != 0 || len(h.lb.ov) != 0 {
		t.Fatalf("after the reload: b2 %p (want %p), removed %v, runtime changes %v", u().Server("b2"), b2, u().Removed(), h.lb.ov)
	}
	var ev struct{ Status string }
	testutil.Eventually(t, 5*time.Second, func() bool {
		_, body := testutil.HTTP(t, "GET", base+"/b2/evacuate", "")
		json.Unmarshal([]byte(body), &ev)
		return ev.Status != "running"
	}, "the evacuation ends")
	if ev.Status != "cancelled" || b2.Active() < 2 {
		t.Errorf("evacuation %s, b2 keeps %d connections; want cancelled at the re-add with 3 (2 if a close was under way)", ev.Status, b2.Active())
	}
}
