package lb

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// idleTLSConns is how many connections BenchmarkIdleTLSConnections holds.
const idleTLSConns = 2000

// BenchmarkIdleTLSConnections is BenchmarkIdleConnections for clients
// that connect over TLS (1.3, ECDSA P-256 certificate) and which the LB
// terminates: what an idle TLS-terminated connection costs the LB. The
// TLS clients run in a child process (TestIdleTLSClients), so nothing of
// theirs is in this process; the broker too.
func BenchmarkIdleTLSConnections(b *testing.B) {
	ca := testutil.NewCA(b)
	srv := ca.Server("lb")
	h := newHarness(b, harnessOpts{servers: []string{brokerProcess(b)},
		listeners: fmt.Sprintf("  - name: mqtts\n    address: \"127.0.0.1:0\"\n    upstream: brokers\n    tls: { cert: %q, key: %q }\n", srv.CertFile, srv.KeyFile),
		upstream:  "    balance: client_id\n    health_check: { type: none }\n",
		top:       "limits: { connect_timeout: 5s, shutdown_grace: 5s, max_connections_per_ip: 100000 }\n"})
	cl := tlsClientsProcess(b, h.lb.ListenerAddr("mqtts"), ca.CAFile())
	hold := func(n int) {
		cl.do(b, "open "+strconv.Itoa(n))
		testutil.Eventually(b, 20*time.Second, func() bool { return h.lb.Connections().Len() == n }, "%d listed", n)
	}
	release := func() {
		cl.do(b, "close")
		testutil.Eventually(b, 20*time.Second, func() bool { return h.lb.ClientConnections() == 0 }, "LB idle")
	}
	// A relay's goroutines may outlive a connection's last bytes by a
	// moment: measure once they are gone (or after a second).
	measureIdle(b, idleTLSConns, hold, release, func(before memUse) {
		testutil.WaitFor(time.Second, func() bool { return runtime.NumGoroutine() < int(before.goroutines)+idleTLSConns/100 })
	})
}

// tlsClients is the child process holding the benchmark's TLS clients.
type tlsClients struct {
	in  io.Writer
	out *bufio.Reader
}

// do sends the child a command and waits for its "ok".
func (c *tlsClients) do(b *testing.B, cmd string) {
	fmt.Fprintln(c.in, cmd)
	line, err := c.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ok" {
		b.Fatalf("TLS clients: %s: %q, %v", cmd, line, err)
	}
}

// tlsClientsProcess starts TestIdleTLSClients in a child process that
// connects to addr, trusting the CA in caFile.
func tlsClientsProcess(b *testing.B, addr, caFile string) *tlsClients {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestIdleTLSClients$")
	cmd.Env = append(os.Environ(), "MQLB_IDLE_TLS_CLIENTS="+addr, "MQLB_IDLE_TLS_CA="+caFile)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	return &tlsClients{in: in, out: bufio.NewReader(out)}
}

// TestIdleTLSClients is BenchmarkIdleTLSConnections's clients when run as
// its child process: "open N" connects N MQTT clients over TLS (CONNECT,
// CONNACK) and holds them, "close" closes them; each answers "ok".
// Otherwise it is skipped.
func TestIdleTLSClients(t *testing.T) {
	addr := os.Getenv("MQLB_IDLE_TLS_CLIENTS")
	if addr == "" {
		t.Skip("the client process of BenchmarkIdleTLSConnections")
	}
	pem, err := os.ReadFile(os.Getenv("MQLB_IDLE_TLS_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	var conns []*tls.Conn
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "open "); ok {
			k, _ := strconv.Atoi(n)
			for i := range k {
				conns = append(conns, dialTLSClient(t, addr, cfg, fmt.Sprint("idle-tls-", i)))
			}
		} else {
			for _, c := range conns {
				c.Close()
			}
			conns = conns[:0]
		}
		fmt.Println("ok")
	}
}

// dialTLSClient connects an MQTT 3.1.1 client with no keep-alive over TLS
// and waits for CONNACK 0.
func dialTLSClient(t *testing.T, addr string, cfg *tls.Config, id string) *tls.Conn {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: id}))
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[3] != 0 {
		t.Fatalf("%s: CONNACK % x, %v", id, ack, err)
	}
	c.SetDeadline(time.Time{})
	return c
}
