package up

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestClientsQueryChecked: under mqlb up, GET /api/v1/clients on the load
// balancer checks offset and limit as a node does, before asking the
// nodes: a bad one is a 400 with a JSON error (it was a 200 with every
// node's 400 inside); good ones reach the nodes.
func TestClientsQueryChecked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sys := runSystem(t, ctx, cancel, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	base := "http://" + sys.LB.AdminAddr() + "/api/v1/clients"
	for _, tc := range []struct{ query, msg string }{
		{"limit=abc", "limit: want a whole number of at least 1"},
		{"limit=0", "limit: want a whole number of at least 1"},
		{"limit=-3", "limit: want a whole number of at least 1"},
		{"offset=x", "offset: want a whole number of at least 0"},
		{"offset=-1&limit=5", "offset: want a whole number of at least 0"},
		{"q=a&limit=1.5", "limit: want a whole number of at least 1"},
	} {
		code, body := testutil.HTTP(t, "GET", base+"?"+tc.query, "")
		var e struct{ Error string }
		if code != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Error != tc.msg {
			t.Errorf("?%s: %d %s; want 400 {\"error\": %q}", tc.query, code, body, tc.msg)
		}
	}
	code, body := testutil.HTTP(t, "GET", base+"?q=x&offset=0&limit=5", "")
	var ok struct {
		Nodes []struct {
			Name, Error string
			Data        json.RawMessage
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &ok) != nil || len(ok.Nodes) != len(sys.Nodes) {
		t.Fatalf("good query: %d %s", code, body)
	}
	for _, n := range ok.Nodes {
		if n.Error != "" || !strings.Contains(string(n.Data), `"clients"`) {
			t.Errorf("node %s: error %q, data %s", n.Name, n.Error, n.Data)
		}
	}
}
