//go:build linux

package listener

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenConfig turns TCP keep-alive on once, on the listening socket, with
// Go's default timings (first probe after 15 s idle, then every 15 s, 9
// unanswered close the connection), and TCP_NODELAY. Linux copies the
// options to every socket it accepts, which saves Go's four setsockopt calls
// per accepted connection, and ServeLoop's the TCP_NODELAY that Go's accept
// sets on each.
var listenConfig = net.ListenConfig{
	KeepAlive: -1, // inherited, not set per connection
	Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			for _, o := range [...]struct{ level, opt, v int }{
				{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
				{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
				{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
				{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
				{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
			} {
				if err = unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); err != nil {
					err = &net.OpError{Op: "setsockopt", Net: "tcp", Err: err}
					return
				}
			}
		})
		if cerr != nil {
			return cerr
		}
		return err
	},
}
