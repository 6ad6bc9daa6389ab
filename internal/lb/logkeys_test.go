package lb

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// runLB runs a load balancer on cfg until the test ends.
func runLB(t *testing.T, cfg *config.Config, o Options) *LB {
	t.Helper()
	l, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// runJSONLogged runs a load balancer on cfg logging JSON at info into logs.
func runJSONLogged(t *testing.T, cfg *config.Config) (*LB, *testutil.SyncBuffer) {
	t.Helper()
	logs := new(testutil.SyncBuffer)
	l := runLB(t, cfg, Options{Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	return l, logs
}

// TestJSONLogNoDuplicateKeys: the load balancer's JSON log lines, the
// "listening" line included, have each key once.
func TestJSONLogNoDuplicateKeys(t *testing.T) {
	b := testutil.StartMochi(t)
	cfg, err := config.Parse([]byte(`listeners: [{ name: mqtt, address: "127.0.0.1:0", upstream: u }]
upstreams: { u: { servers: [{ name: s, address: "` + b.Addr + `" }] } }
access_log: { path: "off" }
`))
	if err != nil {
		t.Fatal(err)
	}
	_, logs := runJSONLogged(t, cfg)
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), `"msg":"listening"`) },
		"no listening line:\n%s", logs)
	testutil.NoDuplicateKeys(t, logs.String())
}

// TestAdminAuditLogNamesRequester: every change made through the admin API
// is logged with the requester's address (remote=, as the reload line has
// it), and a server state change is one info line with upstream, server,
// from, to and remote (it was two: "server state set" and the API's).
func TestAdminAuditLogNamesRequester(t *testing.T) {
	b1, b2, b3 := testutil.StartMochi(t), testutil.StartMochi(t), testutil.StartMochi(t)
	cfg, err := config.Parse([]byte(`listeners: [{ name: mqtt, address: "127.0.0.1:0", upstream: u }]
upstreams: { u: { balance: sticky, servers: [{ name: s1, address: "` + b1.Addr + `" }, { name: s2, address: "` + b2.Addr + `" }] } }
admin: { address: "127.0.0.1:0" }
access_log: { path: "off" }
`))
	if err != nil {
		t.Fatal(err)
	}
	l, logs := runJSONLogged(t, cfg)
	testutil.Eventually(t, 5*time.Second, l.Serving, "lb serving")
	testutil.ConnectRaw(t, l.ListenerAddr("mqtt"), "audit-1")
	base := "http://" + l.AdminAddr() + "/api/v1"
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/upstreams/u/servers/s1/drain", ""},
		{"PUT", "/upstreams/u/servers/s2/weight", `{"weight": 3}`},
		{"POST", "/upstreams/u/servers", `{"name": "s3", "address": "` + b3.Addr + `"}`},
		{"DELETE", "/upstreams/u/servers/s3", ""},
		{"DELETE", "/connections?client_id=audit-1", ""},
		{"DELETE", "/sticky/u", ""},
		{"POST", "/upstreams/u/servers/s2/evacuate?rate=50", ""},
	} {
		if code, body := testutil.HTTP(t, c.method, base+c.path, c.body); code >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	audit := []string{"server state changed through the admin API", "runtime change: server weight set",
		"runtime change: server added", "runtime change: server removed", "client kicked through the admin API",
		"sticky entries cleared through the admin API", "evacuation started through the admin API"}
	var lines []map[string]any
	testutil.Eventually(t, 5*time.Second, func() bool {
		lines = lines[:0]
		for _, b := range bytes.Split(bytes.TrimSpace([]byte(logs.String())), []byte("\n")) {
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				lines = append(lines, m)
			}
		}
		n := 0
		for _, m := range lines {
			if slices.Contains(audit, m["msg"].(string)) {
				n++
			}
		}
		return n >= len(audit)
	}, "every audit line logged:\n%s", logs)
	for _, msg := range audit {
		var m map[string]any
		for _, x := range lines {
			if x["msg"] == msg {
				m = x
			}
		}
		if r, _ := m["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
			t.Errorf("%q: remote %q, want the requester's address: %v", msg, m["remote"], m)
		}
	}
	var changes []map[string]any
	for _, m := range lines {
		if s, _ := m["server"].(string); s == "s1" && (m["msg"] == "server state set" || m["msg"] == audit[0]) {
			changes = append(changes, m)
		}
	}
	if len(changes) != 1 || changes[0]["upstream"] != "u" || changes[0]["from"] != "up" || changes[0]["to"] != "drain" {
		t.Errorf("s1's drain logged as %v; want one line with upstream u, from up, to drain, remote", changes)
	}
}
