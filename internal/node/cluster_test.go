package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// The package's tests share one 3-node cluster (JetStream takes seconds to
// form); tests that stop or restart nodes start their own.

var (
	sharedOnce    sync.Once
	sharedCluster *cluster
	sharedErr     error
	testRoot      string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mqlb-node-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testRoot = dir
	code := m.Run()
	if sharedCluster != nil {
		sharedCluster.close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// testLogger discards logs unless MQLB_TEST_LOG is set (debug, info, warn).
func testLogger() *slog.Logger {
	level, ok := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn}[os.Getenv("MQLB_TEST_LOG")]
	if !ok {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// cluster is a set of in-process nodes on 127.0.0.1 port 0.
type cluster struct {
	name  string
	nodes []*Node
	dirs  []string
}

// nodeConfig is the config of test node i of a cluster: one TCP listener,
// routes and admin on free ports.
func nodeConfig(cluster string, i int, dir string, peers ...string) *config.Node {
	c := &config.Node{
		Node:      config.NodeIdentity{Name: fmt.Sprintf("n%d", i+1), DataDir: dir},
		Listeners: []config.NodeListener{{Name: "tcp", Address: "127.0.0.1:0"}},
		Mesh:      config.Mesh{ClusterName: cluster, Listen: "127.0.0.1:0", Peers: peers},
		Admin:     config.Admin{Address: "127.0.0.1:0"},
	}
	c.SetDefaults()
	return c
}

// startCluster starts size nodes the way mqlb up does: the first with no
// peers, the others with the first one's route address.
func startCluster(name string, size int, tweak func(*config.Node)) (*cluster, error) {
	cl := &cluster{name: name}
	// A cluster of its own data: two clusters of one name (or one test run
	// with -count=2) must not start on each other's JetStream state.
	root, err := os.MkdirTemp(testRoot, name+"-")
	if err != nil {
		return nil, err
	}
	for i := range size {
		dir := filepath.Join(root, fmt.Sprintf("n%d", i+1))
		var peers []string
		if i > 0 {
			peers = []string{cl.nodes[0].RouteAddr()}
		}
		cfg := nodeConfig(name, i, dir, peers...)
		if tweak != nil {
			tweak(cfg)
		}
		n, err := startNode(cfg)
		if err != nil {
			cl.close()
			return nil, err
		}
		cl.nodes = append(cl.nodes, n)
		cl.dirs = append(cl.dirs, dir)
	}
	return cl, nil
}

// loneNode is a node without a mesh listener, built and not started, for
// tests that drive its parts directly.
func loneNode(tb testing.TB, name string) *Node {
	tb.Helper()
	cfg := nodeConfig(name, 0, tb.TempDir())
	cfg.Mesh.Listen = ""
	n, err := New(cfg, testLogger())
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func startNode(cfg *config.Node) (*Node, error) {
	n, err := New(cfg, testLogger())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func (c *cluster) close() {
	for _, n := range c.nodes {
		if n != nil {
			n.Close()
		}
	}
}

// ready waits until every node is healthy and the store has 3 replicas.
func (c *cluster) ready(t testing.TB) {
	t.Helper()
	for _, n := range c.nodes {
		testutil.Eventually(t, 30*time.Second, func() bool { return n.Healthy() == nil }, "node %s healthy: %v", n.Name(), n.Healthy())
	}
	if len(c.nodes) < 3 {
		return
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := c.nodes[0].store().Replicas(ctx)
		return err == nil && r == 3
	}, "store replicas 3")
}

// addr returns node i's MQTT address.
func (c *cluster) addr(i int) string { return c.nodes[i].ListenerAddr("tcp") }

// shared returns the package's shared 3-node cluster.
func shared(t testing.TB) *cluster {
	t.Helper()
	sharedOnce.Do(func() {
		// Mesh batches on (mesh.batch, off by default): the shared cluster's
		// tests then run through them, and the other clusters' without.
		sharedCluster, sharedErr = startCluster("shared", 3, func(cfg *config.Node) { cfg.Mesh.Batch = new(true) })
	})
	if sharedErr != nil {
		t.Fatalf("shared cluster: %v", sharedErr)
	}
	sharedCluster.ready(t)
	return sharedCluster
}

func TestClusterForms(t *testing.T) {
	c := shared(t)
	for i, n := range c.nodes {
		if n.RouteAddr() == "" || c.addr(i) == "" {
			t.Fatalf("node %d: route %q listener %q", i, n.RouteAddr(), c.addr(i))
		}
		if got := len(n.peerNames()); got != 2 {
			t.Errorf("node %s has %d peers, want 2 (full mesh gossiped from the seed)", n.Name(), got)
		}
	}
}
