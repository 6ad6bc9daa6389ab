package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

const testMeshToken = "0123456789abcdef0123456789abcdef"

// TestRogueRouteRefused dials a node's route port as a NATS server would,
// without the cluster secret, while clients exchange messages: the route is
// refused, receives none of the mesh's traffic, and the refusal is logged
// at warn level or above.
func TestRogueRouteRefused(t *testing.T) {
	cfg := nodeConfig("rogue", 0, filepath.Join(t.TempDir(), "n1"))
	cfg.Mesh.Token = testMeshToken
	n, logs := startLogged(t, cfg, slog.LevelInfo)
	sub := dialV5(t, n.ListenerAddr("tcp"), "rogue-sub", true, 0)
	sub.sub(t, "rogue/#", 0)

	c := rawDial(t, n.RouteAddr())
	r := bufio.NewReader(c)
	if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("route port greeting %q: %v", info, err)
	}
	fmt.Fprintf(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\"name\":\"rogue\",\"cluster\":%q,\"headers\":true}\r\nPING\r\nRS+ $G >\r\n", cfg.Mesh.ClusterName)
	pub := dialV5(t, n.ListenerAddr("tcp"), "rogue-pub", true, 0)
	pub.send(t, "rogue/x", 0, "secret message")
	sub.waitPayload(t, "secret message")
	rest := string(readUntilClosed(t, c))
	if !strings.Contains(rest, "Authorization Violation") {
		t.Errorf("rogue route got %q, want -ERR 'Authorization Violation'", rest)
	}
	for _, traffic := range []string{"PONG", "RS+", "RMSG", "secret message"} {
		if strings.Contains(rest, traffic) {
			t.Errorf("rogue route received %q: %q", traffic, rest)
		}
	}
	waitLogged(t, logs, "wrong or missing mesh.token")
}

// TestRouteWithoutTLSRefused: with mesh.tls, a route that does not do TLS
// (even with the token) is refused and logged.
func TestRouteWithoutTLSRefused(t *testing.T) {
	ca := testutil.NewCA(t)
	peer := ca.Peer("n1")
	cfg := nodeConfig("notls", 0, filepath.Join(t.TempDir(), "n1"))
	cfg.Mesh.Token = testMeshToken
	cfg.Mesh.TLS = &config.MeshTLS{Cert: peer.CertFile, Key: peer.KeyFile, CA: ca.CAFile()}
	n, logs := startLogged(t, cfg, slog.LevelInfo)
	c := rawDial(t, n.RouteAddr())
	fmt.Fprintf(c, "CONNECT {\"user\":%q,\"pass\":%q,\"name\":\"plain\",\"cluster\":%q}\r\nPING\r\n", routeUser, testMeshToken, cfg.Mesh.ClusterName)
	if rest := string(readUntilClosed(t, c)); strings.Contains(rest, "PONG") {
		t.Fatalf("a route without TLS got %q", rest)
	}
	waitLogged(t, logs, "TLS handshake failed")
}

// startLogged starts a node whose log, from level up, the test reads.
func startLogged(t *testing.T, cfg *config.Node, level slog.Level) (*Node, *logCapture) {
	t.Helper()
	return startLoggedBy(t, cfg, func(w io.Writer) slog.Handler {
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	})
}

// startLoggedBy is startLogged with the log handler handler makes.
func startLoggedBy(t *testing.T, cfg *config.Node, handler func(io.Writer) slog.Handler) (*Node, *logCapture) {
	t.Helper()
	logs := &logCapture{}
	n, err := New(cfg, slog.New(handler(logs)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		quiesce()
		n.Close()
	})
	return n, logs
}

// waitLogged waits for a "mesh route refused" warning with reason.
func waitLogged(t *testing.T, logs *logCapture, reason string) {
	t.Helper()
	testutil.Eventually(t, waitFor, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "mesh route refused") && strings.Contains(l, reason) {
				return true
			}
		}
		return false
	}, "refused route not logged at warn with %q:\n%s", reason, logs.String())
}

// TestMeshTokenAndTLS: nodes sharing the token and a CA form a cluster
// over TLS routes and carry messages; the embedded NATS client port stays
// on loopback and refuses a connection without the node's own token.
func TestMeshTokenAndTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	tweak := func(c *config.Node) {
		peer := ca.Peer(c.Node.Name)
		c.Mesh.Token = testMeshToken
		c.Mesh.TLS = &config.MeshTLS{Cert: peer.CertFile, Key: peer.KeyFile, CA: ca.CAFile()}
	}
	cl, err := startCluster("meshtls-"+fmt.Sprint(time.Now().UnixNano()%1000), 2, tweak)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.close)
	cl.ready(t)
	sub := dialV5(t, cl.addr(1), "tls-sub", true, 0)
	sub.sub(t, "meshtls/#", 1)
	pub := dialV5(t, cl.addr(0), "tls-pub", true, 0)
	pub.send(t, "meshtls/x", 1, "over tls")
	sub.waitPayload(t, "over tls")

	clientURL := cl.nodes[0].ns.ClientURL()
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(clientURL, "nats://"))
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("embedded NATS client port on %s, want loopback", clientURL)
	}
	if nc, err := nats.Connect(clientURL, nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Errorf("NATS client port accepted a connection without the token")
	}
}
