//go:build linux

package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialLoop listens on loopback, dials it on a relay loop and returns both
// ends: the ServerConn and the server's.
func dialLoop(t *testing.T) (*ServerConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	sc, err := Dial(ln.Addr().(*net.TCPAddr).AddrPort(), time.Now().Add(5*time.Second), true)
	if err != nil {
		t.Fatal(err)
	}
	srv := <-ch
	if srv == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { sc.Close(); srv.Close() })
	return sc, srv
}

// TestDialHandshakeThenRelay: a server dialled on a loop is written and
// read like a net.Conn (the load balancer's CONNECT and CONNACK), with its
// deadline; then a relay takes it over with a plain TCP client. Bytes the
// server sent after the handshake's last read and before the relay took the
// slot (its edge went to the ServerConn) still reach the client.
func TestDialHandshakeThenRelay(t *testing.T) {
	sc, srv := dialLoop(t)
	if v, err := unix.GetsockoptInt(sc.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); err != nil || v != 1 {
		t.Errorf("SO_KEEPALIVE %d, %v", v, err)
	}
	if _, err := sc.Write([]byte("CONNECT")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(srv, got); err != nil || string(got) != "CONNECT" {
		t.Fatalf("server read %q, %v", got, err)
	}
	sc.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := sc.Read(got); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with nothing sent: %v, want a deadline error", err)
	}
	sc.SetDeadline(time.Now().Add(5 * time.Second))
	srv.Write([]byte("CONNACK"))
	if _, err := io.ReadFull(sc, got); err != nil || string(got) != "CONNACK" {
		t.Fatalf("read %q, %v", got, err)
	}
	sc.SetDeadline(time.Time{})
	srv.Write([]byte("early")) // before the relay: the edge goes to sc
	select {
	case <-sc.ready: // the loop has told sc: the pair will get no edge for it
	case <-time.After(5 * time.Second):
		t.Fatal("no readiness edge for the server's bytes")
	}

	c, lc := tcpPair(t)
	defer c.Close()
	done := make(chan Result, 1)
	Start(lc, sc, new(Stats), Options{}, DoneFunc(func(r Result) { done <- r }))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	early := make([]byte, 5)
	if _, err := io.ReadFull(c, early); err != nil || string(early) != "early" {
		t.Fatalf("client got %q, %v: bytes sent before the relay took the server lost", early, err)
	}
	c.Write([]byte("up"))
	srv.SetDeadline(time.Now().Add(5 * time.Second))
	up := make([]byte, 2)
	if _, err := io.ReadFull(srv, up); err != nil || string(up) != "up" {
		t.Fatalf("server got %q, %v", up, err)
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	go srv.Write(big)
	back := make([]byte, len(big))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, big) {
		t.Fatalf("1 MiB server→client: %v", err)
	}
	srv.Close()
	select {
	case r := <-done:
		if r.Reason != "server_closed" {
			c.Close()
		}
	case <-time.After(5 * time.Second):
		c.Close()
	}
	if sc.Close() != nil {
		t.Error("Close of a ServerConn the relay owns closed something")
	}
}

// TestDialErrors: a refused port fails the dial with the net package's kind
// of error (the dial timeout: upstream's TestDialTimeoutThroughUntil).
func TestDialErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	_, err = Dial(addr, time.Now().Add(5*time.Second), false)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("dial to a closed port: %v, want a dial OpError with ECONNREFUSED", err)
	}
}

// TestDialToGoroutineRelay: a ServerConn with a client that is not plain
// TCP moves to Go's poller and is relayed by goroutines.
func TestDialToGoroutineRelay(t *testing.T) {
	sc, srv := dialLoop(t)
	a, b := net.Pipe()
	defer a.Close()
	Start(b, sc, new(Stats), Options{}, DoneFunc(func(Result) {}))
	srv.Write([]byte("hi"))
	a.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 2)
	if _, err := io.ReadFull(a, got); err != nil || string(got) != "hi" {
		t.Fatalf("got %q, %v", got, err)
	}
}
