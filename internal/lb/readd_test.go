package lb

import (
	"fmt"
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
		{"runtime API", func() error { return h.lb.RemoveServer("brokers", "b2") },
			func() error { return h.lb.AddServer("brokers", config.Server{Name: "b2", Address: addr}) }},
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
