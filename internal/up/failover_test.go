package up

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestNodeStoppedClientsResumeThroughLB: persistent-session clients use the
// cluster through the load balancer; the node holding them leaves (evacuated
// by the LB at a paced rate, then stopped); they
// reconnect through the LB, land on the other nodes, and pub/sub resumes
// (their subscriptions restored from the session registry).
func TestNodeStoppedClientsResumeThroughLB(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	level := slog.LevelError
	if os.Getenv("MQLB_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	sys := runSystem(t, ctx, cancel, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	lbAddr := sys.LB.ListenerAddr("mqtt")

	got := &received{m: map[string]bool{}}
	sub := persistentClient(t, lbAddr, "fo-sub", func(_ mqtt3.Client, m mqtt3.Message) { got.add(string(m.Payload())) })
	if tok := sub.Subscribe("fo/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := persistentClient(t, lbAddr, "fo-pub", nil)
	publish := func(msg string) {
		t.Helper()
		tok := pub.Publish("fo/x", 1, false, msg)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", msg, tok.Error())
		}
	}
	publish("before")
	testutil.Eventually(t, 10*time.Second, func() bool { return got.has("before") }, "delivered before the stop")

	// Stop the node the subscriber is on: the LB evacuates it at a paced
	// rate first, and the clients reconnect (paho auto-reconnect) through
	// the LB to the other nodes, taking their sessions over.
	conns := sys.LB.Connections().List("fo-sub")
	if len(conns) != 1 {
		t.Fatalf("subscriber has %d connections through the LB", len(conns))
	}
	stopped := conns[0].Record().Server
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	ev, err := sys.StopNode(sctx, stopped)
	scancel()
	if err != nil || ev.Status != "done" || ev.Moved < 1 || ev.Rate != EvacuateRate {
		t.Fatalf("StopNode: %v, evacuation %+v", err, ev)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		c := sys.LB.Connections().List("fo-sub")
		return len(c) == 1 && c[0].Record().Server != stopped && sub.IsConnectionOpen() && pub.IsConnectionOpen()
	}, "subscriber back through the LB on another node")
	for i := 0; !got.has("after"); i++ {
		if i == 200 {
			t.Fatalf("no delivery after the stop; got %v", got.list())
		}
		publish("after")
		testutil.WaitFor(100*time.Millisecond, func() bool { return got.has("after") })
	}
	if s := sys.LB.Upstreams().Get("cluster").Server(stopped); s.State().String() != "drain" {
		t.Errorf("stopped node's state %s, want drain", s.State())
	}
}

type received struct {
	mu sync.Mutex
	m  map[string]bool
}

func (r *received) add(s string) { r.mu.Lock(); r.m[s] = true; r.mu.Unlock() }

func (r *received) has(s string) bool { r.mu.Lock(); defer r.mu.Unlock(); return r.m[s] }

func (r *received) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.m {
		out = append(out, k)
	}
	return out
}

// persistentClient is an MQTT 3.1.1 client with a persistent session
// (clean session 0) that reconnects by itself.
func persistentClient(t *testing.T, addr, id string, onMsg mqtt3.MessageHandler) mqtt3.Client {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
		SetDefaultPublishHandler(onMsg)
	c := mqtt3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// runSystem starts the whole system on free ports and runs it until the
// test ends (cancel stops it; the test waits for it).
func runSystem(t *testing.T, ctx context.Context, cancel context.CancelFunc, log *slog.Logger) *System {
	t.Helper()
	sys, err := Start(ctx, Options{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return sys
}
