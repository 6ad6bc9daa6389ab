//go:build linux

package listener

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
			for i, o := range [...][2]int{
				{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
				{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
				{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
				{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
			} {
				if v[i], err = unix.GetsockoptInt(int(fd), o[0], o[1]); err != nil {
					t.Error(err)
				}
			}
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
