package listen

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
	"github.com/pires/go-proxyproto"

	"github.com/mqlb/mqlb/internal/testutil"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// testServer is a mochi broker with the identity hook, an allow-all auth hook
// and a recorder of established sessions, serving listeners from this package.
type testServer struct {
	srv     *mqtt.Server
	rec     *recorder
	addr    map[string]string // listener id → bound address
	closing atomic.Bool       // close has been called
}

// close closes the server; only the first call does anything (mochi's Close
// panics on a second call). The test cleanup calls it too.
func (ts *testServer) close() {
	if ts.closing.CompareAndSwap(false, true) {
		_ = ts.srv.Close()
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startServer(t *testing.T, opts ...Options) *testServer {
	t.Helper()
	s := mqtt.New(&mqtt.Options{Logger: discardLogger()})
	rec := &recorder{seen: map[string]seen{}}
	for _, h := range []mqtt.Hook{NewIdentityHook(), new(mochiauth.AllowHook), rec} {
		if err := s.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	ts := &testServer{srv: s, rec: rec, addr: map[string]string{}}
	for _, o := range opts {
		if o.Address == "" {
			o.Address = "127.0.0.1:0"
		}
		if o.CloseClients == nil { // as the node does; mochi's own CloseFn can deadlock
			o.CloseClients = ClientCloser(s)
		}
		l, err := New(o, nil)
		if err != nil {
			t.Fatalf("New(%s): %v", o.ID, err)
		}
		if err := s.AddListener(l); err != nil {
			t.Fatal(err)
		}
		ts.addr[o.ID] = l.Address()
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.close)
	return ts
}

// seen is what the broker knew of a client once its session was established.
type seen struct {
	Username string
	Remote   string
	Listener string
	CN       string
	CertOK   bool
}

type recorder struct {
	mqtt.HookBase
	mu   sync.Mutex
	seen map[string]seen
}

func (r *recorder) ID() string           { return "test-recorder" }
func (r *recorder) Provides(b byte) bool { return b == mqtt.OnSessionEstablished }

func (r *recorder) OnSessionEstablished(cl *mqtt.Client, _ mpackets.Packet) {
	cn, ok := CertIdentity(cl)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[cl.ID] = seen{
		Username: string(cl.Properties.Username),
		Remote:   cl.Net.Remote,
		Listener: cl.Net.Listener,
		CN:       cn,
		CertOK:   ok,
	}
}

// wait returns what the broker recorded for a client id, polling until it
// appears (OnSessionEstablished runs just after the CONNACK is written).
func (r *recorder) wait(t *testing.T, id string) seen {
	t.Helper()
	var s seen
	testutil.Eventually(t, 5*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		var ok bool
		s, ok = r.seen[id]
		return ok
	}, "no session recorded for client %q", id)
	return s
}

// count returns how many clients have had a session established.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *recorder) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.seen[id]
	return ok
}

// dial opens a TCP connection that the test closes at the end.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialTLS opens a TLS connection, optionally after writing a PROXY header.
func dialTLS(t *testing.T, addr string, cfg *tls.Config, h *proxyproto.Header) net.Conn {
	t.Helper()
	c := dial(t, addr)
	if h != nil {
		writeHeader(t, c, h)
	}
	tc := tls.Client(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("tls handshake: %v", err)
	}
	return tc
}

func writeHeader(t *testing.T, c net.Conn, h *proxyproto.Header) {
	t.Helper()
	if _, err := h.WriteTo(c); err != nil {
		t.Fatalf("write PROXY header: %v", err)
	}
}

// headerFrom builds a PROXY header claiming the client is src.
func headerFrom(version byte, src string) *proxyproto.Header {
	dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883}
	return proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), dst)
}

// connectV5 runs an MQTT 5 CONNECT with paho over conn. The connack is
// returned whether or not the server accepted.
func connectV5(t *testing.T, conn net.Conn, cp paho.Connect) (*paho.Client, chan *paho.Publish, *paho.Connack, error) {
	t.Helper()
	msgs := make(chan *paho.Publish, 16)
	c := paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil },
		},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	cp.CleanStart = true
	cp.UsernameFlag = cp.Username != ""
	cp.PasswordFlag = len(cp.Password) > 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &cp)
	if err == nil {
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	}
	return c, msgs, ca, err
}

// mustConnectV5 connects and fails the test on any refusal.
func mustConnectV5(t *testing.T, conn net.Conn, cp paho.Connect) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	c, msgs, _, err := connectV5(t, conn, cp)
	if err != nil {
		t.Fatalf("connect %q: %v", cp.ClientID, err)
	}
	return c, msgs
}

// waitClosed reads from c until the server closes it, failing the test if
// that takes longer than within. It returns how long it took.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	buf := make([]byte, 256)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection still open after %v", within)
		}
		return time.Since(start)
	}
}
