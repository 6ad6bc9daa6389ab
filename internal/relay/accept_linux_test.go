//go:build linux

package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mqlb/mqlb/internal/testutil"
)

// acceptLoop connects to a new loopback listener and accepts the connection
// as a ClientConn; it returns the ClientConn, its descriptor and the
// client's end.
func acceptLoop(t *testing.T) (*ClientConn, int, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File() // blocking: accept4 waits
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, _, err := unix.Accept4(int(f.Fd()), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	local := ln.Addr().(*net.TCPAddr).AddrPort()
	cc, err := NewClientConn(fd, d.LocalAddr().(*net.TCPAddr).AddrPort(), local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); d.Close() })
	return cc, fd, d.(*net.TCPConn)
}

// listenOne listens on loopback and returns its address and the first
// connection it accepts.
func listenOne(t *testing.T) (netip.AddrPort, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
		ln.Close()
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort(), ch
}

func readN(t *testing.T, r io.Reader, n int, what string) string {
	t.Helper()
	if c, ok := r.(net.Conn); ok {
		c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("%s: read %q, %v", what, b, err)
	}
	return string(b)
}

// TestClientConnHandover: a client accepted on a loop reads its CONNECT
// (after bytes put back by Unread), a server is dialled into its slot, and
// a relay takes both sockets over as they are: the pair holds the very
// descriptor accepted, not a duplicate. Bytes each side sent before the
// relay started (their edges went to the handshake's conns), and the
// client's FIN after them, still reach the other side.
func TestClientConnHandover(t *testing.T) {
	cc, fd, cli := acceptLoop(t)
	if got := cc.LocalAddr().String(); got != cc.local.String() {
		t.Errorf("LocalAddr %s, want %s", got, cc.local)
	}
	cc.Unread([]byte("PROXY"))
	cli.Write([]byte("CONNECT"))
	cc.SetDeadline(time.Now().Add(5 * time.Second))
	if got := readN(t, cc, 12, "client conn"); got != "PROXYCONNECT" {
		t.Fatalf("read %q", got)
	}
	addr, accepted := listenOne(t)
	sc, err := cc.Dial(addr, time.Now().Add(5*time.Second), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Write([]byte("CONNECT")); err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	defer srv.Close()
	readN(t, srv, 7, "server")
	srv.Write([]byte("CONNACK"))
	if got := readN(t, sc, 7, "server conn"); got != "CONNACK" {
		t.Fatalf("read %q", got)
	}
	sc.SetDeadline(time.Time{})

	// Before the relay: edges go to cc and sc.
	srv.Write([]byte("early-down"))
	cli.Write([]byte("early-up"))
	cli.CloseWrite()
	testutil.Eventually(t, 5*time.Second, func() bool {
		return cc.readable.Load() && sc.readable.Load() && cc.ended.Load() != 0
	}, "edges for the early bytes and the FIN")

	done := make(chan Result, 1)
	r := Start(cc, sc, new(Stats), Options{}, DoneFunc(func(r Result) { done <- r }))
	p, ok := r.s.(*pair)
	if !ok {
		t.Fatalf("relayed by %T, want a loop pair", r.s)
	}
	if p.fd[client] != fd {
		t.Errorf("pair relays descriptor %d, want the accepted %d (no duplicate)", p.fd[client], fd)
	}
	if got := readN(t, cli, 10, "client"); got != "early-down" {
		t.Errorf("client got %q", got)
	}
	if got := readN(t, srv, 8, "server"); got != "early-up" {
		t.Errorf("server got %q", got)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := srv.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("server read %d, %v after the client's FIN; want EOF", n, err)
	}
	srv.Write([]byte("late"))
	if got := readN(t, cli, 4, "client"); got != "late" {
		t.Errorf("client got %q after its FIN", got)
	}
	srv.Close()
	select {
	case res := <-done:
		if res.Reason != "client_closed" {
			t.Errorf("result %+v, want client_closed", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end")
	}
	if cc.Close() != nil || sc.Close() != nil {
		t.Error("Close of conns the relay owned closed something")
	}
}

// TestClientConnRetryThenRelay: a server that fails the handshake is
// closed and another dialled into the same slot (the load balancer's
// CONNACK-confirmed retry); the first one's edges reach nobody, the relay
// serves the second.
func TestClientConnRetryThenRelay(t *testing.T) {
	cc, _, cli := acceptLoop(t)
	addr1, acc1 := listenOne(t)
	sc1, err := cc.Dial(addr1, time.Now().Add(5*time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	sc1.Write([]byte("x"))
	srv1 := <-acc1
	readN(t, srv1, 1, "first server")
	srv1.Close() // declines
	sc1.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc1.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from a closed server: %v", err)
	}
	sc1.Close()
	addr2, acc2 := listenOne(t)
	sc2, err := cc.Dial(addr2, time.Now().Add(5*time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := <-acc2
	defer srv2.Close()
	done := make(chan Result, 1)
	Start(cc, sc2, new(Stats), Options{}, DoneFunc(func(r Result) { done <- r }))
	cli.Write([]byte("up"))
	if got := readN(t, srv2, 2, "server"); got != "up" {
		t.Errorf("server got %q", got)
	}
	srv2.Write([]byte("down"))
	if got := readN(t, cli, 4, "client"); got != "down" {
		t.Errorf("client got %q", got)
	}
	cli.Close()
	srv2.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end")
	}
}

// TestClientConnCloseWakesRead: Close from another goroutine (an evicted
// handshake) ends a read that waits, and the slot is free after.
func TestClientConnCloseWakesRead(t *testing.T) {
	cc, _, _ := acceptLoop(t)
	errc := make(chan error, 1)
	go func() {
		_, err := cc.Read(make([]byte, 8))
		errc <- err
	}()
	cc.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the read")
	}
	if _, err := cc.Dial(netip.MustParseAddrPort("127.0.0.1:1"), time.Now().Add(time.Second), false); err == nil {
		t.Error("Dial from a closed client succeeded")
	}
}

// TestClientConnToTCPConn: a ClientConn relayed with a server that is not
// dialled into its slot moves to Go's poller, and Close of the ClientConn
// closes what it became.
func TestClientConnToTCPConn(t *testing.T) {
	cc, _, cli := acceptLoop(t)
	s, srv := tcpPair(t)
	defer srv.Close()
	done := make(chan Result, 1)
	Start(cc, s, new(Stats), Options{}, DoneFunc(func(r Result) { done <- r }))
	cli.Write([]byte("up"))
	if got := readN(t, srv, 2, "server"); got != "up" {
		t.Errorf("server got %q", got)
	}
	srv.Write([]byte("down"))
	if got := readN(t, cli, 4, "client"); got != "down" {
		t.Errorf("client got %q", got)
	}
	cli.Close()
	srv.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end")
	}

	cc2, _, cli2 := acceptLoop(t)
	tcp, err := cc2.TCPConn()
	if err != nil {
		t.Fatal(err)
	}
	cc2.Close()
	cli2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cli2.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client read %v after Close of the moved conn, want EOF", err)
	}
	if _, err := tcp.Write([]byte("x")); err == nil {
		t.Error("the net.TCPConn is still open")
	}
}

// dialledPair accepts a client on a loop and dials a server into its slot;
// it returns the ClientConn, the client's end, the ServerConn and the
// server's end.
func dialledPair(t *testing.T) (*ClientConn, *net.TCPConn, *ServerConn, net.Conn) {
	t.Helper()
	cc, _, cli := acceptLoop(t)
	addr, accepted := listenOne(t)
	sc, err := cc.Dial(addr, time.Now().Add(5*time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { sc.Close(); srv.Close() })
	return cc, cli, sc, srv
}

// TestClientConnFINBeforeRelay: a client that sends its last bytes and its
// FIN before the relay starts (the edge, with EPOLLRDHUP, went to the
// ClientConn) has both reach the server, with nothing sent to the client to
// raise another edge.
func TestClientConnFINBeforeRelay(t *testing.T) {
	cc, cli, sc, srv := dialledPair(t)
	cli.Write([]byte("bye"))
	cli.CloseWrite()
	testutil.Eventually(t, 5*time.Second, func() bool { return cc.ended.Load() != 0 }, "the FIN's edge")
	done := make(chan Result, 1)
	Start(cc, sc, new(Stats), Options{}, DoneFunc(func(r Result) { done <- r }))
	if got := readN(t, srv, 3, "server"); got != "bye" {
		t.Errorf("server got %q", got)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := srv.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("server read %d, %v after the client's FIN; want EOF", n, err)
	}
	srv.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end")
	}
}

// TestServerFINReadInHandshake: a server that answers and closes (a broker
// refusing the CONNECT) has its answer read by the handshake, after the
// edge of its FIN: the relay, told of the FIN, ends the client's side with
// no further edge to wake it.
func TestServerFINReadInHandshake(t *testing.T) {
	cc, cli, sc, srv := dialledPair(t)
	srv.Write([]byte("CONNACK"))
	srv.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return sc.ended.Load() != 0 }, "the FIN's edge")
	sc.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64) // a short read: the socket looks drained after it
	if n, err := sc.Read(b); err != nil || string(b[:n]) != "CONNACK" {
		t.Fatalf("read %q, %v", b[:n], err)
	}
	done := make(chan Result, 1)
	Start(cc, sc, new(Stats), Options{}, DoneFunc(func(r Result) { done <- r }))
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := cli.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client read %d, %v after the server's FIN; want EOF", n, err)
	}
	cli.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end")
	}
}

// TestClientConnEOFAfterLastBytes: a client that sends bytes and closes at
// once (one edge for both) has its bytes read and then its EOF, with no
// further edge to wake the read: the inspection of a CONNECT cut short by a
// close ends at once, not at the connect timeout.
func TestClientConnEOFAfterLastBytes(t *testing.T) {
	cc, cli, _, _ := dialledPair(t)
	cli.Write([]byte{0x10, 0x10, 0x00}) // the start of a CONNECT
	cli.Close()
	testutil.Eventually(t, 5*time.Second, func() bool { return cc.ended.Load() != 0 }, "the FIN's edge")
	cc.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64) // a short read: the socket looks drained after it
	if n, err := cc.Read(b); err != nil || n != 3 {
		t.Fatalf("read %d, %v; want the 3 bytes", n, err)
	}
	start := time.Now()
	if n, err := cc.Read(b); n != 0 || err != io.EOF || time.Since(start) > time.Second {
		t.Fatalf("read %d, %v after %s; want EOF at once", n, err, time.Since(start))
	}
}

// TestClientConnHandoverRaces: hand-overs racing a Close of either side
// (gate eviction, shutdown, a failed attempt) end each relay exactly once,
// relay the bytes of those that were not closed, and leave every loop's
// slots consistent: each used or free once, none both.
func TestClientConnHandoverRaces(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srvLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srvLn.Close()
	go func() { // the server echoes
		for {
			c, err := srvLn.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	srvAddr := srvLn.Addr().(*net.TCPAddr).AddrPort()
	const n = 300
	errc := make(chan error, n)
	for i := range n {
		cli, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fd, _, err := unix.Accept4(int(f.Fd()), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := NewClientConn(fd, netip.AddrPort{}, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer cli.Close()
			errc <- handoverRace(i%3, cc, cli, srvAddr)
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	for _, l := range loops {
		testutil.Eventually(t, 5*time.Second, func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			used := 0
			for _, m := range l.slots {
				if m != nil {
					used++
				}
			}
			return used == 0
		}, "every slot freed")
		l.mu.Lock()
		seen := map[uint32]bool{}
		for _, s := range l.free {
			if seen[s] {
				t.Errorf("slot %d is on the free list twice", s)
			}
			seen[s] = true
		}
		if len(seen) != len(l.slots) {
			t.Errorf("%d slots, %d free", len(l.slots), len(seen))
		}
		l.mu.Unlock()
	}
}

// handoverRace runs one hand-over: kind 0 relays and echoes, 1 closes the
// client conn as the relay starts, 2 closes the server conn.
func handoverRace(kind int, cc *ClientConn, cli net.Conn, srv netip.AddrPort) error {
	sc, err := cc.Dial(srv, time.Now().Add(5*time.Second), false)
	if err != nil {
		cc.Close()
		return err
	}
	cli.Write([]byte("early"))
	done := make(chan Result, 2)
	switch kind {
	case 1:
		go cc.Close()
	case 2:
		go sc.Close()
	}
	Start(cc, sc, new(Stats), Options{}, DoneFunc(func(r Result) { done <- r }))
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	if kind == 0 {
		b := make([]byte, 5)
		if _, err := io.ReadFull(cli, b); err != nil || string(b) != "early" {
			return errors.New("echo: " + string(b))
		}
	}
	cli.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return errors.New("relay did not end")
	}
	select {
	case r := <-done:
		return errors.New("told twice: " + r.Reason)
	case <-time.After(10 * time.Millisecond):
	}
	return nil
}
