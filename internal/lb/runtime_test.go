package lb

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestRuntimeAPI adds a server, moves weight, removes one, kicks a client
// and clears the sticky table through the API, and checks that the changes
// survive a reload of the unchanged file.
func TestRuntimeAPI(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2, upstream: "    balance: sticky\n"})
	extra := testutil.StartMochi(t)
	base := "http://" + h.admin + "/api/v1"
	ups := func() []string {
		var names []string
		for _, s := range h.lb.Upstreams().Get("brokers").Servers {
			names = append(names, s.Name())
		}
		return names
	}

	code, body := testutil.HTTP(t, "POST", base+"/upstreams/brokers/servers", `{"name":"b9","address":"`+extra.Addr+`","weight":3}`)
	if code != 201 || !strings.Contains(body, `"name": "b9"`) || strings.Join(ups(), ",") != "b0,b1,b9" {
		t.Fatalf("add: %d %s; servers %v", code, body, ups())
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/upstreams/brokers/servers", `{"name":"b9","address":"` + extra.Addr + `"}`, 409, "already has"},
		{"POST", "/upstreams/brokers/servers", `{"name":"x"}`, 400, "address"},
		{"POST", "/upstreams/brokers/servers", `{"address":"nohostport"}`, 400, "address"},
		{"POST", "/upstreams/brokers/servers", `{"bogus":1}`, 400, "unknown field"},
		{"POST", "/upstreams/zz/servers", `{"address":"127.0.0.1:1"}`, 404, "no upstream"},
		{"PUT", "/upstreams/brokers/servers/b0/weight", `{"weight":0}`, 400, "1 to 256"},
		{"PUT", "/upstreams/brokers/servers/zz/weight", `{"weight":2}`, 404, "no server"},
		{"PUT", "/upstreams/brokers/servers/b0/weight", `{}`, 400, "weight"},
		{"DELETE", "/upstreams/brokers/servers/zz", ``, 404, "no server"},
		{"DELETE", "/connections?client_id=nobody", ``, 404, "no connection"},
		{"DELETE", "/connections", ``, 400, "client_id"},
		{"DELETE", "/sticky/zz", ``, 404, "no upstream"},
	} {
		code, body := testutil.HTTP(t, tc.method, base+tc.path, tc.body)
		var e struct{ Error string }
		json.Unmarshal([]byte(body), &e)
		if code != tc.code || !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s %s %s: %d %s, want %d %q", tc.method, tc.path, tc.body, code, body, tc.code, tc.msg)
		}
	}

	if code, body := testutil.HTTP(t, "PUT", base+"/upstreams/brokers/servers/b0/weight", `{"weight":7}`); code != 200 || !strings.Contains(body, `"weight": 7`) {
		t.Fatalf("weight: %d %s", code, body)
	}
	c := openRaw(t, h.addr, "kick-me")
	placed := h.lb.Connections().List("kick-me")[0].Record().Server
	if code, body := testutil.HTTP(t, "DELETE", base+"/upstreams/brokers/servers/"+placed, ""); code != 200 {
		t.Fatalf("remove %s: %d %s", placed, code, body)
	}
	if err := c.alive(); err != nil {
		t.Fatalf("a removed server's connection must stay: %v", err)
	}

	// An unchanged file reloads with the runtime changes kept.
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"b0": true, "b1": true, "b9": true}
	delete(want, placed)
	if got := ups(); len(got) != 2 || !want[got[0]] || !want[got[1]] {
		t.Fatalf("after reload: %v, want %v", got, want)
	}
	if placed != "b0" && h.lb.Upstreams().Get("brokers").Server("b0").Weight() != 7 {
		t.Errorf("weight lost on reload")
	}
	if _, body := testutil.HTTP(t, "GET", base+"/upstreams/brokers", ""); !strings.Contains(body, `"name": "brokers"`) {
		t.Errorf("get upstream: %s", body)
	}

	// Kick, then clear sticky entries by key and all.
	if code, body := testutil.HTTP(t, "DELETE", base+"/connections?client_id=kick-me", ""); code != 200 || !strings.Contains(body, `"closed": 1`) {
		t.Fatalf("kick: %d %s", code, body)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return c.alive() != nil }, "kicked connection closed")
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(h.accessLog(), `client_id="kick-me"`) && strings.Contains(h.accessLog(), `reason="kicked"`)
	}, "the kicked connection logged reason=\"kicked\":\n%s", h.accessLog())
	openRaw(t, h.addr, "stay")
	openRaw(t, h.addr, "stay2")
	if code, body := testutil.HTTP(t, "DELETE", base+"/sticky/brokers?key=stay", ""); code != 200 || !strings.Contains(body, `"removed": 1`) {
		t.Fatalf("clear key: %d %s", code, body)
	}
	if code, body := testutil.HTTP(t, "DELETE", base+"/sticky/brokers", ""); code != 200 || !strings.Contains(body, `"removed": 1`) {
		t.Fatalf("clear all: %d %s", code, body)
	}
	if _, body := testutil.HTTP(t, "GET", base+"/sticky/brokers", ""); !strings.Contains(body, `"size": 0`) {
		t.Errorf("sticky table after clear: %s", body)
	}
}

// TestRuntimeChangeYieldsToFile: when the file changes a server the
// runtime API changed, the file wins.
func TestRuntimeChangeYieldsToFile(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2})
	base := "http://" + h.admin + "/api/v1"
	if code, body := testutil.HTTP(t, "PUT", base+"/upstreams/brokers/servers/b1/weight", `{"weight":5}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	yaml := h.yaml([]string{h.brokers[0].Addr, h.brokers[1].Addr}, harnessOpts{})
	h.write(strings.Replace(yaml, `name: b1, address: "`+h.brokers[1].Addr+`"`, `name: b1, address: "`+h.brokers[1].Addr+`", weight: 2`, 1))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	if w := h.lb.Upstreams().Get("brokers").Server("b1").Weight(); w != 2 {
		t.Errorf("weight %d, want the file's 2", w)
	}
}
