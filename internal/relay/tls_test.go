package relay

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// tlsProxied is client ⇄ [TLS-terminating relay] ⇄ server: the client's
// TLS end, the plain server end and the relay.
type tlsProxied struct {
	client *tls.Conn
	server *net.TCPConn
	relay  *Relay
	stats  *Stats
	done   chan Result
}

// tlsSetup tweaks newTLSProxied: wrap wraps the client's socket under its
// TLS layer; before runs with the client and the relay's TLS end after the
// handshake, before the relay starts; goroutines relays over a plain net.TCPConn (the
// goroutine relay) instead of a Socket.
type tlsSetup struct {
	opt        Options
	wrap       func(net.Conn) net.Conn
	before     func(client, end *tls.Conn)
	goroutines bool
}

var (
	testCAOnce sync.Once
	testCert   tls.Certificate
	testPool   *tls.Config
)

// tlsConfigs returns a server and a client configuration (one CA for the
// whole run: making keys is slow under -race).
func tlsConfigs(t testing.TB) (srv, cli *tls.Config) {
	testCAOnce.Do(func() {
		ca := testutil.NewCA(t)
		testCert = ca.Server("lb").TLS
		testPool = &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}
	})
	return &tls.Config{Certificates: []tls.Certificate{testCert}}, testPool.Clone()
}

func newTLSProxied(t testing.TB, o tlsSetup) *tlsProxied {
	t.Helper()
	srvCfg, cliCfg := tlsConfigs(t)
	c, lc := tcpPair(t)
	ls, s := tcpPair(t)
	var under net.Conn = c
	if o.wrap != nil {
		under = o.wrap(c)
	}
	var base net.Conn = &Socket{TCPConn: lc}
	if o.goroutines {
		base = lc
	}
	p := &tlsProxied{client: tls.Client(under, cliCfg), server: s, stats: new(Stats), done: make(chan Result, 1)}
	tlc := tls.Server(base, srvCfg)
	t.Cleanup(func() { p.client.Close(); s.Close() })
	hs := make(chan error, 1)
	go func() { hs <- p.client.Handshake() }()
	if err := tlc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	if o.before != nil {
		o.before(p.client, tlc)
	}
	p.relay = Start(tlc, ls, p.stats, o.opt, DoneFunc(func(r Result) { p.done <- r }))
	return p
}

func (p *tlsProxied) wait(t testing.TB) Result {
	t.Helper()
	select {
	case r := <-p.done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not end")
		return Result{}
	}
}

// bothPaths runs f with the event-loop TLS relay and the goroutine relay.
func bothPaths(t *testing.T, f func(t *testing.T, goroutines bool)) {
	t.Run("loop", func(t *testing.T) { f(t, false) })
	t.Run("goroutines", func(t *testing.T) { f(t, true) })
}

// TestPipeTLSClient relays a TLS-terminated client to a plain server, both
// ways, with half-close.
func TestPipeTLSClient(t *testing.T) {
	bothPaths(t, func(t *testing.T, goroutines bool) {
		p := newTLSProxied(t, tlsSetup{goroutines: goroutines})
		up, down := randomBytes(t, 1<<20), randomBytes(t, 3<<20)
		atServer := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(p.server); atServer <- b }()
		go func() { p.server.Write(down); p.server.CloseWrite() }()
		if _, err := p.client.Write(up); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(p.client)
		if err != nil || !sameBytes(got, down) {
			t.Fatalf("client got %d bytes (%v), want %d", len(got), err, len(down))
		}
		p.client.CloseWrite()
		if b := <-atServer; !sameBytes(b, up) {
			t.Fatalf("server got %d bytes, want %d", len(b), len(up))
		}
		if r := p.wait(t); r.Reason != "server_closed" {
			t.Errorf("result %+v, want server_closed", r)
		}
		if p.stats.In.Load() != int64(len(up)) || p.stats.Out.Load() != int64(len(down)) {
			t.Errorf("stats in=%d out=%d", p.stats.In.Load(), p.stats.Out.Load())
		}
	})
}

// TestPipeTLSClientWriteSizes: writes of every size around the relay's
// buffers each reach the server before the client writes again, so nothing
// is held back (in crypto/tls or the relay) while the relay waits.
func TestPipeTLSClientWriteSizes(t *testing.T) {
	bothPaths(t, func(t *testing.T, goroutines bool) {
		p := newTLSProxied(t, tlsSetup{goroutines: goroutines})
		sizes := []int{1, 2, smallBufSize - 1, smallBufSize, smallBufSize + 1, 2, 5000, 3, bufSize - 1, bufSize,
			bufSize + 1, 100, 3 * bufSize, smallBufSize, 1, 2 * smallBufSize, 7}
		for _, n := range sizes {
			want := randomBytes(t, n)
			if _, err := p.client.Write(want); err != nil {
				t.Fatal(err)
			}
			expect(t, p.server, want)
			// and back, the same size
			want = randomBytes(t, n)
			if _, err := p.server.Write(want); err != nil {
				t.Fatal(err)
			}
			expect(t, p.client, want)
		}
	})
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
