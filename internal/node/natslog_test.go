package node

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestNATSSlowConsumerWarns: NATS closing one of the node's connections as
// a slow consumer loses what was pending on it, so it is a warning, while
// other notices stay at debug.
func TestNATSSlowConsumerWarns(t *testing.T) {
	var buf bytes.Buffer
	l := &natsLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		closing: new(atomic.Bool), started: time.Now()}
	l.Noticef("Starting nats-server")
	l.Noticef("%s - Slow Consumer Detected: MaxPending of %d Exceeded", "pipe - cid:12", 67108864)
	l.Noticef("Client connection closed: %s", "Slow Consumer (Pending Bytes)")
	out := buf.String()
	if strings.Contains(out, "Starting") {
		t.Errorf("a start-up notice logged at info or above:\n%s", out)
	}
	if n := strings.Count(out, "level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2 (slow consumer detected, connection closed):\n%s", n, out)
	}
	if maxMeshPending < inboxBytes {
		t.Errorf("NATS closes a slow connection at %d bytes pending, before an inbox of %d bytes fills", maxMeshPending, inboxBytes)
	}
}

// TestNATSTransientWarningsDemoted: warnings NATS logs for a state it
// retries out of on its own are debug, so that a healthy run logs no
// warning (TestUpDeliversAcrossNodes failed on one in CI); others stay.
func TestNATSTransientWarningsDemoted(t *testing.T) {
	var buf bytes.Buffer
	l := &natsLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		closing: new(atomic.Bool), started: time.Now()}
	l.Warnf("Error snapshotting JetStream cluster state: %v", "raft: snapshot can not be installed while catchups running")
	l.Warnf("Metalayer blocking snapshot: %d", 3)
	l.Warnf("JetStream cluster stream %q has NO quorum", "s")
	out := buf.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "NO quorum") {
		t.Errorf("want only the quorum warning:\n%s", out)
	}
}

// TestNATSRouteErrorsRateLimited: a node whose peer is down logs the failed
// route reconnects once at error, then once a minute, not every second
// (NATS's default reported every attempt, one line per pooled route).
func TestNATSRouteErrorsRateLimited(t *testing.T) {
	c, err := startCluster("routeerrs", 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.ready(t)
	var buf testutil.SyncBuffer
	survivor := c.nodes[1] // it has node 1 as its configured (explicit) route, retried for ever
	survivor.ns.SetLoggerV2(&natsLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		closing: new(atomic.Bool), started: time.Now().Add(-time.Hour)}, true, false, false)
	c.nodes[0].Close()
	c.nodes[0] = nil
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(buf.String(), "Error trying to connect to route (attempt 3)")
	}, "three failed route reconnects logged")
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "Error trying to connect to route") && strings.Contains(line, "level=ERROR") &&
			!strings.Contains(line, "(attempt 1)") {
			t.Errorf("a repeated route reconnect failure logged at error: %s", line)
		}
	}
}

// TestMeshPortTakenNamed: a node whose mesh.listen port is taken fails to
// start at once, naming the key and the cause, instead of after a 10 s
// "not ready" with the cause in a log line.
func TestMeshPortTakenNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := nodeConfig("taken", 0, t.TempDir())
	cfg.Mesh.Listen = ln.Addr().String()
	start := time.Now()
	n, err := startNode(cfg)
	if err == nil {
		n.Close()
		t.Fatal("started on a taken mesh port")
	}
	if !strings.Contains(err.Error(), "mesh.listen "+ln.Addr().String()) || !strings.Contains(err.Error(), "address already in use") ||
		time.Since(start) > 5*time.Second {
		t.Fatalf("after %s: %v; want at once mesh.listen %s: … address already in use", time.Since(start), err, ln.Addr())
	}
}
