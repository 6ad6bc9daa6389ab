package listen

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCorkGathersWrites(t *testing.T) {
	peer, raw := tcpPair(t)
	under := &countingConn{Conn: raw}
	c := &conn{Conn: under, raw: raw, done: make(chan struct{})}
	var wrapped net.Conn = struct {
		net.Conn
		netConner
	}{c, netConner{c}} // as the inbound guard wraps it

	outer := Cork(wrapped)
	_, _ = c.Write([]byte("one "))
	inner := Cork(c) // nested: the hand-back and a reader on one client
	_, _ = c.Write([]byte("two "))
	inner.Uncork() // writes what was gathered; the outer cork still gathers
	if got := under.writes.Load(); got != 1 {
		t.Fatalf("%d writes after the inner uncork, want 1", got)
	}
	if got := readN(t, peer, 8); got != "one two " {
		t.Fatalf("peer read %q", got)
	}
	_, _ = c.Write([]byte("three "))
	_, _ = c.Write([]byte("four "))
	if got := under.writes.Load(); got != 1 {
		t.Fatalf("%d writes while corked, want still 1", got)
	}
	outer.Uncork()
	outer.Uncork() // (a second time does nothing)
	_, _ = c.Write([]byte("five "))
	if got := under.writes.Load(); got != 3 {
		t.Fatalf("%d writes, want 3 (inner uncork, uncork, the write after)", got)
	}
	if got := readN(t, peer, 16); got != "three four five " {
		t.Fatalf("peer read %q", got)
	}
	_, _ = c.Write([]byte("six "))
	if got := under.writes.Load(); got != 4 {
		t.Fatalf("uncorked write not written at once: %d writes", got)
	}
	if c.cork.buf != nil {
		t.Fatal("buffer kept after the last uncork")
	}

	// Closing while corked writes what was gathered first (mochi's last
	// packet, a DISCONNECT, may be in it).
	Cork(c)
	_, _ = c.Write([]byte("bye"))
	_ = c.Close()
	if got := readN(t, peer, 7); got != "six bye" {
		t.Fatalf("peer read %q", got)
	}
}

func TestCorkOtherConnDoesNothing(t *testing.T) {
	peer, raw := tcpPair(t)
	k := Cork(raw)
	_, _ = raw.Write([]byte("x"))
	k.Uncork()
	if got := readN(t, peer, 1); got != "x" {
		t.Fatalf("peer read %q", got)
	}
}

type netConner struct{ c net.Conn }

func (n netConner) NetConn() net.Conn { return n.c }
