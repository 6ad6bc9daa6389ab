package lb

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestRemovedServerHealthSeriesDropped: the health check histogram of a
// server removed at runtime (admin API) or by a reload, and of every server
// of an upstream a reload removes, leaves /metrics like the other
// per-server series, so servers coming and going do not grow it forever.
func TestRemovedServerHealthSeriesDropped(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2})
	extra := testutil.StartMochi(t)
	base := "http://" + h.admin + "/api/v1"
	series := func(upstream, server string) string {
		return fmt.Sprintf(`mqlb_health_check_duration_seconds_count{result="ok",server=%q,upstream=%q}`, server, upstream)
	}
	waitSeries := func(upstream, server string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(metricsText(t, h), series(upstream, server)) },
			"no health check series for %s/%s", upstream, server)
	}
	gone := func(upstream, server, how string) {
		t.Helper()
		if m := metricsText(t, h); strings.Contains(m, `server="`+server+`",upstream="`+upstream+`"`) {
			t.Errorf("%s: series of %s/%s stay:\n%s", how, upstream, server, grepLines(m, `server="`+server+`"`))
		}
	}

	// Added and removed through the admin API.
	if code, body := testutil.HTTP(t, "POST", base+"/upstreams/brokers/servers", `{"name":"b9","address":"`+extra.Addr+`"}`); code != 201 {
		t.Fatalf("add: %d %s", code, body)
	}
	waitSeries("brokers", "b9")
	if code, body := testutil.HTTP(t, "DELETE", base+"/upstreams/brokers/servers/b9", ""); code != 200 {
		t.Fatalf("remove: %d %s", code, body)
	}
	gone("brokers", "b9", "API remove")

	// A reload that adds an upstream, then one that removes it and a server.
	servers := []string{h.brokers[0].Addr, h.brokers[1].Addr}
	o := harnessOpts{listeners: "  - { name: other, address: \"127.0.0.1:0\", upstream: other }\n"}
	withOther := strings.Replace(h.yaml(servers, o), "admin:",
		"  other:\n"+healthFast+"    servers:\n      - { name: o0, address: \""+extra.Addr+"\" }\nadmin:", 1)
	h.write(withOther)
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	waitSeries("other", "o0")
	waitSeries("brokers", "b1")
	h.write(h.yaml(servers[:1], harnessOpts{}))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	gone("other", "o0", "upstream removed by reload")
	gone("brokers", "b1", "server removed by reload")
	waitSeries("brokers", "b0")
}

// TestRemovedServerMovedSeriesDropped: a server evacuated and then removed
// (the usual way to retire one) leaves no mqlb_rebalance_moved_total series.
func TestRemovedServerMovedSeriesDropped(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2})
	openRaw(t, h.addr, "moved-1")
	placed := h.lb.Connections().List("moved-1")[0].Record().Server
	base := "http://" + h.admin + "/api/v1/upstreams/brokers/servers/" + placed
	if code, body := testutil.HTTP(t, "POST", base+"/evacuate?rate=100", ""); code != 202 {
		t.Fatalf("evacuate: %d %s", code, body)
	}
	moved := fmt.Sprintf(`mqlb_rebalance_moved_total{server=%q,upstream="brokers"} 1`, placed)
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(metricsText(t, h), moved) }, "no %s", moved)
	if code, body := testutil.HTTP(t, "DELETE", base, ""); code != 200 {
		t.Fatalf("remove: %d %s", code, body)
	}
	if m := metricsText(t, h); strings.Contains(m, `server="`+placed+`"`) {
		t.Errorf("series of the removed %s stay:\n%s", placed, grepLines(m, `server="`+placed+`"`))
	}
}
