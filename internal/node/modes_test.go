package node

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestExternalNATS runs two nodes on an external NATS server (mesh.url)
// instead of embedding one each.
func TestExternalNATS(t *testing.T) {
	ns := testutil.StartNATS(t)
	c := &cluster{name: "ext"}
	t.Cleanup(c.close)
	for i := range 2 {
		cfg := nodeConfig("ext", i, filepath.Join(t.TempDir(), fmt.Sprint(i)))
		cfg.Mesh.Listen, cfg.Mesh.URL = "", ns.ClientURL()
		n, err := startNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	c.ready(t)
	if r, _ := c.nodes[0].store().Replicas(t.Context()); r != 1 {
		t.Errorf("buckets on a single external server: %d replicas, want 1", r)
	}

	sub := dialV5(t, c.addr(1), "ext-sub", true, 60)
	sub.sub(t, "ext/t", 1)
	pub := dialV3(t, c.addr(0), "ext-pub", true)
	pub.send(t, "ext/t", 1, true, "hello")
	sub.waitPayload(t, "hello")
	retainedAt(t, c.nodes[1], "ext/t", "hello")

	ackedAt(t, c.nodes[1], "ext-sub")
	_ = sub.Disconnect(&paho.Disconnect{})
	pub.send(t, "ext/t", 1, false, "queued")
	queuedAt(t, c.nodes[1], "ext-sub", 1)
	again := dialV5(t, c.addr(0), "ext-sub", false, 60)
	if !again.connack.SessionPresent {
		t.Fatal("session present = 0 after moving to the other node")
	}
	again.waitPayload(t, "queued")
}

// TestSingleNode runs a node without routes: JetStream standalone, the
// store ready at once, everything but replication working.
func TestSingleNode(t *testing.T) {
	cfg := nodeConfig("solo", 0, t.TempDir())
	cfg.Mesh.Listen = ""
	n, err := startNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{name: "solo", nodes: []*Node{n}}
	t.Cleanup(c.close)
	if err := n.Healthy(); err != nil {
		t.Fatalf("single node not healthy right after Start: %v", err)
	}
	if n.RouteAddr() != "" {
		t.Errorf("RouteAddr %q without routes", n.RouteAddr())
	}
	pub := dialV3(t, c.addr(0), "solo-pub", true)
	pub.send(t, "solo/r", 1, true, "kept")
	got := retainedFor(t, c.addr(0), "solo-sub", "solo/#", "fence/solo")
	if len(got) != 1 || got[0].payload != "kept" {
		t.Fatalf("retained on a single node: %v", got)
	}
}

// TestWillCrossesNodes checks a will message, which mochi publishes without
// the OnPublish hook, still reaches other nodes.
func TestWillCrossesNodes(t *testing.T) {
	c := shared(t)
	sub := dialV5(t, c.addr(2), "will-sub", true, 0)
	sub.sub(t, "will/+", 1)
	dying := dialV5(t, c.addr(0), "will-dying", true, 0, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "will/dying", QoS: 1, Payload: []byte("gone")}
	})
	dying.TerminateConnectionForTest() // no DISCONNECT: the will is published [MQTT-3.1.2-8]
	sub.waitPayload(t, "gone")

	delay := uint32(1)
	late := dialV5(t, c.addr(0), "will-late", true, 30, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "will/late", QoS: 1, Payload: []byte("later")}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	late.TerminateConnectionForTest()
	sub.waitPayload(t, "later") // published by mochi's timer once the delay passed
}

func TestStartFailsCleanly(t *testing.T) {
	first := nodeConfig("fail", 0, t.TempDir())
	first.Mesh.Listen = ""
	n1, err := startNode(first)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n1.Close() })
	second := nodeConfig("fail", 1, t.TempDir())
	second.Mesh.Listen = ""
	second.Listeners[0].Address = n1.ListenerAddr("tcp") // taken
	n2, err := New(second, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "listener tcp") {
		t.Fatalf("Start on a taken address: %v, want an error naming the listener", err)
	}
	if err := n2.Start(t.Context()); err == nil {
		t.Error("a second Start succeeded")
	}
	n2.Close() // closed already by the failed Start: must not panic

	unstarted, err := New(nodeConfig("fail", 2, t.TempDir()), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	unstarted.Close()
	if _, err := New(&config.Node{Node: config.NodeIdentity{Name: "x"}}, nil); err == nil {
		t.Error("New accepted a config without listeners")
	}
}
