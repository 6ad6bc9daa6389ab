//go:build linux

package listener

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mqlb/mqlb/internal/relay"
)

// Accepted sockets inherit the listening socket's keep-alive settings: the
// listener sets them once instead of Go setting them per connection.
func TestAcceptedConnectionsKeepAlive(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", "t", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [4]int, 1)
	go ln.Serve(func(c *net.TCPConn) {
		defer c.Close()
		rc, err := c.SyscallConn()
		if err != nil {
			t.Error(err)
			return
		}
		var v [4]int
		rc.Control(func(fd uintptr) {
			all := sockopts(t, fd)
			copy(v[:], all[1:])
		})
		got <- v
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case v := <-got:
		if want := [4]int{1, 15, 15, 9}; v != want {
			t.Errorf("accepted socket: SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = %v, want %v", v, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}
}

// TestServeLoop: ServeLoop hands over connections registered on a relay
// loop, with the client's and the listener's addresses and no system call
// of their own for options: TCP_NODELAY and the keep-alive settings come
// from the listening socket. Close ends it.
func TestServeLoop(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", "t", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	type accepted struct {
		conn net.Conn
		opts [5]int
	}
	got := make(chan accepted, 1)
	served := make(chan error, 1)
	go func() {
		served <- ln.ServeLoop(func(c net.Conn) {
			a := accepted{conn: c}
			cc, ok := c.(*relay.ClientConn)
			if !ok {
				got <- a
				return
			}
			remote, local := cc.RemoteAddr(), cc.LocalAddr()
			cc.Control(func(fd uintptr) { a.opts = sockopts(t, fd) })
			tcp, err := cc.TCPConn() // the same socket, in Go's poller
			if err != nil {
				t.Error(err)
				got <- a
				return
			}
			defer tcp.Close()
			if tcp.RemoteAddr().String() != remote.String() || tcp.LocalAddr().String() != local.String() {
				t.Errorf("ClientConn addresses %s → %s, the socket's %s → %s", remote, local, tcp.RemoteAddr(), tcp.LocalAddr())
			}
			got <- a
		})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case a := <-got:
		if _, ok := a.conn.(*relay.ClientConn); !ok {
			t.Fatalf("handle got a %T, want a *relay.ClientConn", a.conn)
		}
		if want := [5]int{1, 1, 15, 15, 9}; a.opts != want {
			t.Errorf("accepted socket: TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = %v, want %v", a.opts, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}
	ln.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeLoop after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end ServeLoop")
	}
}

// sockopts reads TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT of fd.
func sockopts(t *testing.T, fd uintptr) (v [5]int) {
	for i, o := range [...][2]int{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
	} {
		var err error
		if v[i], err = unix.GetsockoptInt(int(fd), o[0], o[1]); err != nil {
			t.Error(err)
		}
	}
	return v
}
