package lb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// rawClient is an MQTT 3.1.1 connection kept open through the LB; alive
// proves it still works end to end with a PINGREQ/PINGRESP round trip.
type rawClient struct {
	id string
	c  net.Conn
}

func openRaw(t testing.TB, addr, id string) *rawClient {
	t.Helper()
	return &rawClient{id: id, c: testutil.ConnectRaw(t, addr, id)}
}

func (r *rawClient) alive() error {
	r.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write(mqttwire.AppendPingreq(nil)); err != nil {
		return err
	}
	var resp [2]byte
	if _, err := io.ReadFull(r.c, resp[:]); err != nil {
		return err
	}
	if resp != [2]byte{0xD0, 0x00} {
		return fmt.Errorf("got % x, want PINGRESP", resp)
	}
	return nil
}

// TestReloadUnder200ConnectionsDropsNone: a reload that removes a server
// (which holds connections), adds one and changes the policy leaves all 200
// established connections working, and new connections follow the new config.
func TestReloadUnder200ConnectionsDropsNone(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 3})
	extra := testutil.StartMochi(t)
	clients := make([]*rawClient, 200)
	for i := range clients {
		clients[i] = openRaw(t, h.addr, fmt.Sprintf("r-%d", i))
	}
	// A few real paho clients with a subscription, to see messages flow after.
	got := make(chan string, 10)
	sub, _, err := connectV5(t, h.addr, "reload-sub", func(p *paho.Publish) { got <- string(p.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "reload/t", QoS: 1}}})
	onB1 := 0
	for _, c := range clients {
		if h.brokerOf(c.id) == 1 {
			onB1++
		}
	}
	if onB1 == 0 {
		t.Fatal("no connection on b1; the test needs some on the removed server")
	}
	// New config: b1 removed, the extra broker added, least_conn instead of client_id.
	h.write(h.yaml([]string{h.brokers[0].Addr, h.brokers[2].Addr, extra.Addr},
		harnessOpts{upstream: "    balance: least_conn\n", names: []string{"b0", "b2", "b3"}}))
	if err := h.lb.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, c := range clients {
		if err := c.alive(); err != nil {
			t.Fatalf("%s dropped by the reload: %v", c.id, err)
		}
	}
	u := h.lb.Upstreams().Get("brokers")
	if u.Config().Balance != "least_conn" || u.Server("b1") != nil || u.Server("b3") == nil {
		t.Fatalf("reload not applied: balance %s, servers %v", u.Config().Balance, u.Servers)
	}
	// New connections never go to the removed broker.
	for i := range 12 {
		openRaw(t, h.addr, fmt.Sprintf("after-%d", i))
		if h.brokerOf(fmt.Sprintf("after-%d", i)) == 1 {
			t.Fatal("a new connection went to the removed server")
		}
	}
	if !extra.HasClient("after-0") && !extra.HasClient("after-1") && !extra.HasClient("after-2") {
		t.Error("least_conn did not send any of the first new connections to the empty new server")
	}
	// The paho subscriber still receives (its broker may be the removed one: it stays connected).
	pub, _, err := connectV5(t, h.addr, "reload-pub", nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.brokerOf("reload-pub") == h.brokerOf("reload-sub") {
		pub.Publish(ctx, &paho.Publish{Topic: "reload/t", QoS: 1, Payload: []byte("after reload")})
		select {
		case m := <-got:
			if m != "after reload" {
				t.Errorf("got %q", m)
			}
		case <-ctx.Done():
			t.Error("subscriber got nothing after the reload")
		}
	}
}

// TestReloadInvalidConfigIsRefused: a broken file is refused with its error
// (path and line), over the API too, and the running config keeps serving.
func TestReloadInvalidConfigIsRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	before := h.lb.Upstreams()
	h.write("listeners:\n  - { name: mqtt, address: \"127.0.0.1:0\", upstream: nowhere }\nupstreams:\n  brokers:\n    balance: clientid\n    servers: [{ address: \"127.0.0.1:1\" }]\n")
	err := h.lb.Reload()
	if err == nil || !strings.Contains(err.Error(), `upstreams.brokers.balance (line 5): unknown policy "clientid"`) ||
		!strings.Contains(err.Error(), `listeners[0].upstream (line 2): upstream "nowhere" is not defined`) {
		t.Fatalf("reload error %v; want both problems with paths and lines", err)
	}
	resp, err := http.Post("http://"+h.admin+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "clientid") {
		t.Errorf("POST /-/reload: %d %s; want 400 naming the problem", resp.StatusCode, body)
	}
	if h.lb.Upstreams() != before {
		t.Error("the running upstreams were replaced by a refused reload")
	}
	if _, _, err := connectV5(t, h.addr, "still-served", nil); err != nil {
		t.Fatalf("not serving after a refused reload: %v", err)
	}
}

// TestReloadListenersAndDrainState: a reload opens a new listener and closes
// a removed one (its connection goes on), and an operator's drain survives it.
func TestReloadListenersAndDrainState(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2, listeners: "  - { name: old, address: \"127.0.0.1:0\", upstream: brokers }\n"})
	oldAddr := h.lb.ListenerAddr("old")
	onOld := openRaw(t, oldAddr, "on-old")
	h.lb.Upstreams().Get("brokers").Server("b1").Drain()
	servers := []string{h.brokers[0].Addr, h.brokers[1].Addr}
	h.write(h.yaml(servers, harnessOpts{listeners: "  - { name: new, address: \"127.0.0.1:0\", upstream: brokers }\n"}))
	if err := h.lb.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := onOld.alive(); err != nil {
		t.Fatalf("connection on the removed listener dropped: %v", err)
	}
	if _, err := net.DialTimeout("tcp", oldAddr, time.Second); err == nil {
		t.Error("removed listener still accepts")
	}
	newAddr := h.lb.ListenerAddr("new")
	if newAddr == "" {
		t.Fatal("new listener not opened")
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			openRaw(t, newAddr, fmt.Sprint("n-", i))
		}()
	}
	wg.Wait()
	if st := h.lb.Upstreams().Get("brokers").Server("b1").State().String(); st != "drain" {
		t.Errorf("b1 state %s after reload; the operator's drain must survive", st)
	}
	for i := range 10 {
		if h.brokers[1].HasClient(fmt.Sprint("n-", i)) {
			t.Error("a new connection went to the drained server")
		}
	}
}
