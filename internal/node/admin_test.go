package node

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAdminHealthAndMetrics(t *testing.T) {
	c := shared(t)
	base := "http://" + c.nodes[0].AdminAddr()
	if code, body := get(t, base+"/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	sub := dialV5(t, c.addr(1), "metrics-sub", true, 0)
	sub.sub(t, "metrics/t", 0)
	pub := dialV5(t, c.addr(0), "metrics-pub", true, 0)
	pub.send(t, "metrics/t", 0, "x")
	sub.waitPayload(t, "x")
	_, body := get(t, base+"/metrics", "")
	for _, want := range []string{
		`mqlb_node_connections{node="n1"} `,
		`mqlb_node_messages_in_total{node="n1"} `,
		`mqlb_node_mesh_messages_out_total{node="n1"} `,
		`mqlb_node_dropped_total{node="n1",reason="offline_queue_full"} `,
		`mqlb_node_sessions{node="n1",state="online"} `,
		`mqlb_node_retained{node="n1"} `,
		`mqlb_node_up{node="n1"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	_, body = get(t, "http://"+c.nodes[1].AdminAddr()+"/metrics", "")
	if !strings.Contains(body, `mqlb_node_mesh_messages_in_total{node="n2"} `) || strings.Contains(body, `mqlb_node_mesh_messages_in_total{node="n2"} 0`) {
		t.Errorf("node 2 metrics do not count the mesh message it received")
	}
}

func TestAdminTokenAndUnhealthy(t *testing.T) {
	// A first node of a cluster, alone: its store waits for a second node.
	cfg := nodeConfig("lonely", 0, t.TempDir())
	cfg.Admin.Token = "s3cret"
	n, err := startNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	base := "http://" + n.AdminAddr()
	if code, _ := get(t, base+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without token = %d, want 401", code)
	}
	if code, _ := get(t, base+"/metrics", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong token = %d, want 401", code)
	}
	// /healthz needs no token, as the load balancer's (probes cannot send one).
	code, body := get(t, base+"/healthz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store not ready") {
		t.Errorf("/healthz of a node waiting for peers = %d %q, want 503 store not ready", code, body)
	}
	// /livez neither, and it is alive: a liveness probe does not restart
	// a node for its peers.
	if code, body := get(t, base+"/livez", ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/livez of a node waiting for peers = %d %q, want 200 ok", code, body)
	}
	// It still serves MQTT meanwhile.
	s := dialV5(t, n.ListenerAddr("tcp"), "lonely", true, 0)
	s.sub(t, "lonely/t", 0)
	s.send(t, "lonely/t", 0, "alone")
	s.waitPayload(t, "alone")
}
