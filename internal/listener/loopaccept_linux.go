//go:build linux

package listener

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mqlb/mqlb/internal/relay"
)

// ServeLoop is Serve for connections the relay's event loops will carry:
// each is accepted with accept4(2) and registered straight in a loop's
// epoll set (relay.NewClientConn), never in Go's poller, so the relay takes
// its socket over without duplicating, closing or registering it again;
// nor is it asked for its local address (the listener's, unless that is a
// wildcard) or given TCP_NODELAY and keepalives (inherited from the
// listening socket, set up by listenConfig). handle gets a
// *relay.ClientConn, or a *net.TCPConn when no loop can be used.
//
// The listening socket is waited on through a duplicate of it in an
// os.File (Go's poller waits for a listener's readiness only inside
// Accept); Close closes both.
func (l *Listener) ServeLoop(handle func(net.Conn)) error {
	raw, err := l.rawFile()
	if err != nil {
		if l.isClosed() {
			return nil // as Serve after Close
		}
		return err
	}
	rc, err := raw.SyscallConn()
	if err != nil {
		return err
	}
	var local netip.AddrPort
	if a := AddrPort(l.ln.Addr()); !a.Addr().IsUnspecified() {
		local = a
	}
	accept := func() (net.Conn, error) {
		var fd int
		var sa syscall.Sockaddr
		var aerr error
		err := rc.Read(func(lfd uintptr) bool {
			for {
				// syscall's, not x/sys/unix's: the latter asks every IPv4
				// socket's protocol (getsockopt) to tell L2TP apart.
				fd, sa, aerr = syscall.Accept4(int(lfd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
				// As the net package: a connection reset before it was
				// accepted is not an error of the listener's.
				if !errors.Is(aerr, unix.EINTR) && !errors.Is(aerr, unix.ECONNABORTED) {
					return !errors.Is(aerr, unix.EAGAIN)
				}
			}
		})
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				err = net.ErrClosed
			}
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.ln.Addr(), Err: err}
		}
		if aerr != nil {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.ln.Addr(), Err: os.NewSyscallError("accept4", aerr)}
		}
		c, err := relay.NewClientConn(fd, sockaddrAddrPort(sa), local)
		if errors.Is(err, relay.ErrNoLoop) {
			f := os.NewFile(uintptr(fd), "client")
			nc, err := net.FileConn(f)
			f.Close()
			if err != nil {
				return nil, err
			}
			return nc, nil
		}
		if err != nil {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.ln.Addr(), Err: err}
		}
		return c, nil
	}
	return l.serve(accept, handle)
}

// rawFile duplicates the listening socket into an os.File in Go's poller
// (the duplicate shares the socket's non-blocking mode), once.
func (l *Listener) rawFile() (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, net.ErrClosed
	}
	if l.raw != nil {
		return l.raw, nil
	}
	rc, err := l.ln.SyscallConn()
	if err != nil {
		return nil, err
	}
	dup := -1
	cerr := rc.Control(func(fd uintptr) { dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	l.raw = os.NewFile(uintptr(dup), "listener")
	return l.raw, nil
}

func sockaddrAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
