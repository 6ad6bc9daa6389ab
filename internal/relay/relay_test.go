package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	return tcpPairWith(t, net.ListenConfig{})
}

// tcpPairWith is tcpPair with the listening side set up by lc.
func tcpPairWith(t testing.TB, lc net.ListenConfig) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	return d.(*net.TCPConn), s.(*net.TCPConn)
}

// proxied sets up client ⇄ [lbClient | Pipe | lbServer] ⇄ server and returns
// the outer ends plus the relay's result channel.
type proxied struct {
	client, server net.Conn
	lbClient       net.Conn
	lbServer       net.Conn
	stats          *Stats
	done           chan Result
}

func newProxied(t testing.TB, opt Options) *proxied {
	t.Helper()
	c, lc := tcpPair(t)
	ls, s := tcpPair(t)
	p := &proxied{client: c, server: s, lbClient: lc, lbServer: ls, stats: new(Stats), done: make(chan Result, 1)}
	Start(lc, ls, p.stats, opt, DoneFunc(func(r Result) { p.done <- r }))
	t.Cleanup(func() { c.Close(); s.Close(); lc.Close(); ls.Close() })
	return p
}

func (p *proxied) wait(t testing.TB) Result {
	t.Helper()
	select {
	case r := <-p.done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not end")
		return Result{}
	}
}

func TestPipeBothWaysIntegrity(t *testing.T) {
	p := newProxied(t, Options{})
	up, down := randomBytes(t, 8<<20), randomBytes(t, 5<<20)
	gotAtServer, gotAtClient := make(chan []byte, 1), make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(p.server); gotAtServer <- b }()
	go func() { b, _ := io.ReadAll(p.client); gotAtClient <- b }()
	go func() { p.server.Write(down); p.server.(*net.TCPConn).CloseWrite() }()
	if _, err := p.client.Write(up); err != nil {
		t.Fatal(err)
	}
	p.client.(*net.TCPConn).CloseWrite()
	if b := <-gotAtServer; !sameBytes(b, up) {
		t.Errorf("server got %d bytes, want the %d sent", len(b), len(up))
	}
	if b := <-gotAtClient; !sameBytes(b, down) {
		t.Errorf("client got %d bytes, want the %d sent", len(b), len(down))
	}
	r := p.wait(t)
	if r.Err != nil || (r.Reason != "client_closed" && r.Reason != "server_closed") {
		t.Errorf("result %+v, want a clean close", r)
	}
	if p.stats.In.Load() != int64(len(up)) || p.stats.Out.Load() != int64(len(down)) {
		t.Errorf("stats in=%d out=%d, want %d and %d", p.stats.In.Load(), p.stats.Out.Load(), len(up), len(down))
	}
}

func TestPipeHalfClosePropagates(t *testing.T) {
	p := newProxied(t, Options{})
	p.client.Write([]byte("ping"))
	p.client.(*net.TCPConn).CloseWrite()
	// The server sees the data and then EOF, but can still answer.
	b, err := io.ReadAll(p.server)
	if err != nil || string(b) != "ping" {
		t.Fatalf("server read %q, %v; want ping then EOF", b, err)
	}
	p.server.Write([]byte("pong"))
	p.server.Close()
	b, err = io.ReadAll(p.client)
	if err != nil || string(b) != "pong" {
		t.Fatalf("client read %q, %v; want pong after its half-close", b, err)
	}
	if r := p.wait(t); r.Reason != "client_closed" {
		t.Errorf("reason %q, want client_closed (the client finished first)", r.Reason)
	}
}

func TestPipeFinTimeout(t *testing.T) {
	p := newProxied(t, Options{FinTimeout: 200 * time.Millisecond})
	p.server.Close() // the broker hangs up; the client stays silent
	r := p.wait(t)
	if r.Reason != "server_closed" {
		t.Errorf("reason %q, want server_closed", r.Reason)
	}
	// The client connection was closed by the relay: reads end.
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(p.client); err != nil {
		t.Errorf("client read after relay end: %v", err)
	}
}

func TestPipeEndsWhenClientResets(t *testing.T) {
	p := newProxied(t, Options{})
	p.client.(*net.TCPConn).SetLinger(0)
	p.client.Close() // RST
	if r := p.wait(t); r.Reason != "client_error" && r.Reason != "client_closed" {
		t.Errorf("reason %q after a client reset", r.Reason)
	}
}

func TestPipeServerResetEndsBoth(t *testing.T) {
	p := newProxied(t, Options{})
	p.server.(*net.TCPConn).SetLinger(0)
	p.server.Close() // RST
	r := p.wait(t)
	if r.Reason != "server_error" && r.Reason != "server_closed" {
		t.Errorf("reason %q after a reset", r.Reason)
	}
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(p.client)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("client side was not closed after the server reset")
	}
}

// TestIdleRelaysHoldNoPipes checks the point of the custom splice loop: a
// waiting relay holds its two sockets and nothing else (io.Copy's splice
// would hold a pipe, two descriptors, per waiting direction).
func TestIdleRelaysHoldNoPipes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("splice is linux-only")
	}
	const n = 100
	before := openFDs(t)
	ps := make([]*proxied, n)
	for i := range ps {
		ps[i] = newProxied(t, Options{})
		ps[i].client.Write([]byte("x")) // move a byte so the pipe path ran
		buf := make([]byte, 1)
		if _, err := io.ReadFull(ps[i].server, buf); err != nil {
			t.Fatal(err)
		}
	}
	// Each relay: the two outer ends and the relay's two sockets.
	testutil.Eventually(t, 5*time.Second, func() bool {
		return openFDs(t)-before <= 4*n+8
	}, "open descriptors %d for %d idle relays; want at most %d", openFDs(t)-before, n, 4*n+8)
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }
