//go:build linux

package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
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

// TestDialErrors: a refused port fails the dial, or the first write when
// the connect was still in progress as Dial returned, with the net
// package's kind of error; a connect that does not complete fails the
// first write by the dial's deadline, however late the read/write one is.
// (The dial timeout through Connect: upstream's TestDialTimeoutThroughUntil.)
func TestDialErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	sc, err := Dial(addr, time.Now().Add(5*time.Second), false)
	if err == nil {
		_, err = sc.Write([]byte("CONNECT"))
		sc.Close()
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("dial to a closed port: %v, want a dial OpError with ECONNREFUSED", err)
	}

	full := fullListener(t)
	sc, err = Dial(full, time.Now().Add(200*time.Millisecond), false)
	if err != nil {
		t.Fatalf("dial to a full accept queue: %v, want it in progress", err)
	}
	defer sc.Close()
	sc.SetDeadline(time.Now().Add(10 * time.Second)) // the CONNACK deadline, set after Dial, is later
	start := time.Now()
	_, err = sc.Write([]byte("CONNECT"))
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write while the connect hangs: %v, want a dial OpError with the deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the write waited %v: the dial's deadline was 200ms", took)
	}
}

// fullListener returns the address of a socket that listens and never
// accepts, with its accept queue full: a connect there stays in progress
// (or the test is skipped where the kernel completes it).
func fullListener(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	for range 4 { // fill the queue
		c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	if c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel completes connects to a full accept queue")
	}
	return addr
}

// TestDialReadsAfterEdges: the handshake's reads are made only once the
// loop reports input, except after a read that filled the buffer, which
// may have left bytes: they are read at once, with no edge to come.
func TestDialReadsAfterEdges(t *testing.T) {
	sc, srv := dialLoop(t)
	if _, err := sc.Write([]byte("CONNECT")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(srv, make([]byte, 7)); err != nil { // else its close resets
		t.Fatal(err)
	}
	if _, err := srv.Write([]byte("CONNACK+rest")); err != nil {
		t.Fatal(err)
	}
	sc.SetDeadline(time.Now().Add(5 * time.Second))
	head := make([]byte, 7)
	if _, err := io.ReadFull(sc, head); err != nil || string(head) != "CONNACK" {
		t.Fatalf("read %q, %v", head, err)
	}
	// Nothing more arrives: the rest must come from what is queued.
	sc.SetDeadline(time.Now().Add(300 * time.Millisecond))
	rest := make([]byte, 16)
	n, err := sc.Read(rest)
	if err != nil || string(rest[:n]) != "+rest" {
		t.Fatalf("read after a full one: %q, %v; want the queued +rest without waiting for an edge", rest[:n], err)
	}
	srv.Close()
	sc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc.Read(rest); err != io.EOF {
		t.Fatalf("read after the server closed: %v, want io.EOF", err)
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
