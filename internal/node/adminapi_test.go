package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func do(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminClientsAPI(t *testing.T) {
	c := shared(t)
	base := "http://" + c.nodes[0].AdminAddr() + "/api/v1"
	a := dialV5(t, c.addr(0), "adm-alpha-1", true, 0)
	a.sub(t, "adm/+/x", 1)
	dialV5(t, c.addr(0), "adm-alpha-2", true, 0)
	dialV5(t, c.addr(0), "other-adm-beta", true, 0)
	dialV3(t, c.addr(0), "adm-v3", true)

	var list struct {
		Total   int
		Clients []struct {
			ClientID      string `json:"client_id"`
			Connected     bool
			Subscriptions int
		}
	}
	_, body := do(t, "GET", base+"/clients?q=alpha&limit=1")
	if err := json.Unmarshal([]byte(body), &list); err != nil || list.Total != 2 || len(list.Clients) != 1 ||
		list.Clients[0].ClientID != "adm-alpha-1" || list.Clients[0].Subscriptions != 1 || !list.Clients[0].Connected {
		t.Fatalf("clients?q=alpha&limit=1: %v %s", err, body)
	}
	_, body = do(t, "GET", base+"/clients?q=alpha&offset=1")
	if json.Unmarshal([]byte(body), &list); len(list.Clients) != 1 || list.Clients[0].ClientID != "adm-alpha-2" {
		t.Errorf("page 2: %s", body)
	}
	_, body = do(t, "GET", base+"/clients?q=adm-") // prefix and substring alike
	if json.Unmarshal([]byte(body), &list); list.Total != 4 {
		t.Errorf("q=adm-: %s", body)
	}
	if code, _ := do(t, "GET", base+"/clients?limit=0"); code != 400 {
		t.Errorf("limit=0: %d", code)
	}

	code, body := do(t, "GET", base+"/clients/adm-alpha-1/subscriptions")
	if code != 200 || !strings.Contains(body, `"filter": "adm/+/x"`) || !strings.Contains(body, `"qos": 1`) {
		t.Errorf("subscriptions: %d %s", code, body)
	}
	if code, _ := do(t, "GET", base+"/clients/nobody/subscriptions"); code != 404 {
		t.Errorf("unknown client: %d", code)
	}

	if code, body := do(t, "DELETE", base+"/clients/adm-alpha-1"); code != 200 {
		t.Fatalf("kick: %d %s", code, body)
	}
	select {
	case d := <-a.disconnect:
		if d.ReasonCode != 0x98 {
			t.Errorf("kicked with reason %#x, want 0x98 administrative action", d.ReasonCode)
		}
	case <-time.After(waitFor):
		t.Fatal("kicked client got no DISCONNECT")
	}
	if code, body := do(t, "DELETE", base+"/clients/nobody"); code != 404 || !strings.Contains(body, "no client") {
		t.Errorf("kick unknown: %d %s", code, body)
	}
}

func TestAdminClusterAPI(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(1), "adm-retain", true, 0)
	pub.sub(t, "adm-cluster/#", 0)
	var got struct {
		Node, Cluster string
		Healthy       bool
		Members       []struct{ Name, State string }
		Store         []struct {
			Bucket   string
			Stream   string
			Replicas int
			Leader   string
			Peers    []struct{ Name string }
		}
		Mesh struct {
			Subscriptions int64 `json:"nats_subscriptions"`
		}
	}
	code, body := do(t, "GET", "http://"+c.nodes[1].AdminAddr()+"/api/v1/cluster")
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("%d %v %s", code, err, body)
	}
	// retained and sessions; with replicated durability the QoS 2 bucket and the queue stream too
	want := 2
	if c.nodes[1].durable.On() {
		want = 4
	}
	if !got.Healthy || len(got.Members) != len(c.nodes) || len(got.Store) != want || got.Mesh.Subscriptions == 0 {
		t.Errorf("cluster: %s", body)
	}
	for _, s := range got.Store {
		if s.Bucket == "" && s.Stream == "" || s.Replicas < 2 || s.Leader == "" || len(s.Peers) == 0 {
			t.Errorf("store entry %+v: want a name, replicas, a leader and peers", s)
		}
	}
	if want == 4 && !strings.HasSuffix(got.Store[3].Stream, "_queue") {
		t.Errorf("last store entry %+v, want the session queue stream", got.Store[3])
	}
}
