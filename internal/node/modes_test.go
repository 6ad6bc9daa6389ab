package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestExternalNATSTooOld: a node refuses an external nats-server older than
// 2.10 (Debian 12's is 2.9.10) at start, saying why. It used to start, say
// it was healthy, and fail every persistent session's queue for ever
// ("multiple consumer filter subjects not supported").
func TestExternalNATSTooOld(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nats-server not found on PATH in CI (apt-get install -y nats-server)")
		}
		t.Skip("nats-server not found on PATH (apt-get install -y nats-server)")
	}
	out, _ := exec.Command(bin, "--version").Output()
	_, v, _ := strings.Cut(strings.TrimSpace(string(out)), " v")
	if versionAtLeast(v, minNATS) {
		t.Skipf("nats-server %s is new enough; this test needs one older than %s", v, minNATS)
	}
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", t.TempDir())
	logs := new(testutil.SyncBuffer)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	listening := regexp.MustCompile(`Listening for client connections on (\S+)`)
	var addr string
	testutil.Eventually(t, 10*time.Second, func() bool {
		m := listening.FindStringSubmatch(logs.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, "nats-server listening: %s", logs)
	cfg := nodeConfig("old", 0, t.TempDir())
	cfg.Mesh.Listen, cfg.Mesh.URL = "", "nats://"+addr
	n, err := startNode(cfg)
	if err == nil {
		n.Close()
		t.Fatalf("a node started on nats-server %s", v)
	}
	if !strings.Contains(err.Error(), "nats-server "+v+" is too old") {
		t.Errorf("error %q; want it to say nats-server %s is too old", err, v)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{{"2.9.10", false}, {"2.10.0", true}, {"2.10.22", true}, {"2.11.0-RC.1", true}, {"v2.12.1", true}, {"3.0.0", true}, {"1.99.99", false}, {"garbage", false}, {"", false}} {
		if got := versionAtLeast(tc.v, minNATS); got != tc.want {
			t.Errorf("versionAtLeast(%q, %s) = %v", tc.v, minNATS, got)
		}
	}
}

// TestReloadNamesRestartOnlyChanges: a reload that changes what applies
// only on restart (a listener, a packet size limit) says which sections;
// one that changes only what Reload applies says nothing. The node said
// "config reloaded" and kept the old port and limit without a word.
func TestReloadNamesRestartOnlyChanges(t *testing.T) {
	cur := nodeConfig("r", 0, t.TempDir())
	next := *cur
	next.Auth.ACLDefault = "deny"
	next.Sessions.MaxOfflineMessages = 7
	if keys := restartOnly(cur, &next); len(keys) != 0 {
		t.Errorf("reloadable changes named as restart-only: %v", keys)
	}
	next.Listeners = []config.NodeListener{{Name: "tcp", Address: "127.0.0.1:18953"}}
	next.MQTT.MaxPacketSize = 2048
	if keys := restartOnly(cur, &next); !slices.Equal(keys, []string{"listeners", "mqtt"}) {
		t.Errorf("restart-only changes: %v, want [listeners mqtt]", keys)
	}
}
