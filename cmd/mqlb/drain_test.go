package main

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/testutil"
)

// drained is a client of a node that records when and how the node sent
// it away.
type drained struct {
	*paho.Client
	got    chan string
	reason chan byte
	at     chan time.Time
}

func dialDrained(t *testing.T, addr, id string, clean bool, expiry uint32, filter string) (*drained, *paho.Connack) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &drained{got: make(chan string, 16), reason: make(chan byte, 1), at: make(chan time.Time, 1)}
	d.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			d.got <- string(pr.Packet.Payload)
			return true, nil
		}},
		OnServerDisconnect: func(dc *paho.Disconnect) { d.at <- time.Now(); d.reason <- dc.ReasonCode },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, err := d.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil && (ca == nil || ca.ReasonCode < 0x80) {
		t.Fatalf("connect %s: %v", id, err)
	}
	if filter != "" && ca.ReasonCode == 0 {
		if _, err := d.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	return d, ca
}

// TestNodeDrainOnSIGTERM: a node stopped with SIGTERM first sends its
// clients away at node.drain_rate, as EMQX's evacuation does, while it stays
// in the mesh: connected clients get DISCONNECT 0x9C use another server,
// spread over time; a new CONNECT gets CONNACK 0x9C; /healthz answers 503;
// and a session waiting offline on it, resumed on the other node meanwhile,
// is handed over with its queued messages (memory durability: a node that
// is gone cannot hand them over). Before, every client got 0x8B at once
// and the queued messages were lost.
func TestNodeDrainOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	n1 := startNodeProc(t, dir, "d1", "memory", nil, "drain_rate: 4", "drain_timeout: 30s")
	// two more at once: the store (3 replicas) forms once both are there
	var n2, n3 *nodeProc
	var wg sync.WaitGroup
	wg.Go(func() { n2 = startNodeProc(t, dir, "d2", "memory", []string{n1.route}) })
	wg.Go(func() { n3 = startNodeProc(t, dir, "d3", "memory", []string{n1.route}) })
	wg.Wait()
	if n2 == nil || n3 == nil {
		t.FailNow()
	}
	for _, p := range []*nodeProc{n1, n2, n3} {
		testutil.Eventually(t, 60*time.Second, p.healthy, "node %s healthy", p.name)
	}
	// a session waiting offline on d1 with 3 messages queued
	q, _ := dialDrained(t, n1.tcp, "drain-q", false, 600, "drain/#")
	if err := q.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	var live []*drained
	for _, id := range []string{"drain-a", "drain-b", "drain-c", "drain-d"} {
		c, _ := dialDrained(t, n1.tcp, id, true, 0, "")
		live = append(live, c)
	}
	pub, _ := dialDrained(t, n2.tcp, "drain-pub", true, 0, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// (a SUBACK comes once the other nodes know the subscription)
	for _, m := range []string{"m1", "m2", "m3"} {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "drain/x", QoS: 1, Payload: []byte(m)}); err != nil {
			t.Fatal(err)
		}
	}

	if err := n1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return !n1.healthy() }, "d1 /healthz not 503 while draining")
	if _, ca := dialDrained(t, n1.tcp, "drain-new", true, 0, ""); ca == nil || ca.ReasonCode != 0x9C {
		t.Errorf("a new client of the draining node: CONNACK %+v, want 0x9C use another server", ca)
	}
	// the offline session resumes on d2 and is handed over by d1, still there
	back, ca := dialDrained(t, n2.tcp, "drain-q", false, 600, "")
	if !ca.SessionPresent {
		t.Errorf("session not present on d2")
	}
	want := map[string]bool{"m1": true, "m2": true, "m3": true}
	timeout := time.After(20 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-back.got:
			delete(want, m)
		case <-timeout:
			t.Fatalf("queued messages not handed over: missing %v", want)
		}
	}
	var first, last time.Time
	for _, c := range live {
		select {
		case r := <-c.reason:
			at := <-c.at
			if r != 0x9C {
				t.Errorf("DISCONNECT 0x%02x, want 0x9C use another server", r)
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
			if at.After(last) {
				last = at
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a client of the draining node got no DISCONNECT")
		}
	}
	// 4 clients at 4 per second: about 0.75 s from the first to the last
	if spread := last.Sub(first); spread < 500*time.Millisecond {
		t.Errorf("4 clients sent away within %v at drain_rate 4/s", spread)
	}
	select {
	case <-n1.done:
	case <-time.After(30 * time.Second):
		t.Fatal("d1 did not stop after its clients were gone")
	}
}

// TestNodeDrainKeysReloaded: node.drain_timeout and node.drain_rate changed
// by a SIGHUP apply to the next SIGTERM. Before, they were restart-only: a
// node started without a drain (drain_timeout 0) still stopped at once.
func TestNodeDrainKeysReloaded(t *testing.T) {
	dir := t.TempDir()
	n := startNodeProc(t, dir, "r1", "memory", nil, "drain_timeout: 0s")
	c, _ := dialDrained(t, n.tcp, "reload-a", true, 0, "")
	cfg, err := os.ReadFile(n.configFile)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(cfg), "drain_timeout: 0s", "drain_timeout: 30s, drain_rate: 1", 1)
	if next == string(cfg) {
		t.Fatalf("no drain_timeout in the config:\n%s", cfg)
	}
	if err := os.WriteFile(n.configFile, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	n.cmd.Process.Signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(n.log.String(), "SIGHUP: config reloaded") },
		"reloaded; log:\n%s", n.log.String())
	if strings.Contains(n.log.String(), "apply on restart only") {
		t.Errorf("the drain keys were reported as restart-only:\n%s", n.log.String())
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-c.reason:
		if r != 0x9C {
			t.Errorf("DISCONNECT 0x%02x, want 0x9C use another server", r)
		}
	case <-n.done:
		t.Fatal("the node stopped without draining: the reloaded drain_timeout was not applied")
	case <-time.After(20 * time.Second):
		t.Fatal("the client got no DISCONNECT")
	}
}
