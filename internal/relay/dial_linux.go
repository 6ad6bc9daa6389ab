//go:build linux

package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ServerConn is a connection to a server dialled on a relay loop: its
// socket is registered once, in the loop's epoll set, with the token of a
// pair's server side, and the pair that relays it later takes the slot over
// (Start with a plain TCP client). A server connection dialled through Go's
// net package is registered with Go's poller for the handshake, then
// duplicated, closed (and so removed from Go's poller) and added to the
// loop: four system calls, besides getsockname and getpeername for the
// net.TCPConn's addresses, that a ServerConn does not make.
//
// Until a relay owns it, it is read and written by one goroutine at a time
// (the load balancer's handshake: the CONNECT out, the CONNACK in): a read
// or write that would block waits for the loop to report the socket ready,
// until the deadline. It has one deadline for both directions.
//
// Dial does not wait for the connect to complete: the first Write does (a
// write to a socket still connecting would block; one whose connect failed
// returns why), so the CONNECT goes out on the first edge with no
// SO_ERROR query in between, or at once when the connect is done by then.
// Until a write or read succeeds, errors are the dial's, and the dial's
// deadline bounds the waits.
type ServerConn struct {
	sockConn
	owner *ClientConn // dialled into its client's slot (ClientConn.Dial); nil: a slot of its own
}

// sockConn is a socket registered in a loop's epoll set, read and written
// by one goroutine at a time until a relay takes it: a ServerConn, or a
// ClientConn.
type sockConn struct {
	entry
	l          *loop
	fd         int            // -1 once closed or taken by a relay
	addr       netip.AddrPort // the peer's
	ready      chan struct{}  // an edge since the last wait (buffered: one is enough)
	closing    chan struct{}  // closed by Close
	deadline   time.Time
	connectBy  time.Time     // the dial's deadline, while connecting
	connecting bool          // no write or read has succeeded yet (the handshake goroutine's)
	readable   atomic.Bool   // an input edge (EPOLLIN, RDHUP, HUP, ERR) since the last read that drained the socket
	ended      atomic.Uint32 // EPOLLRDHUP, HUP and ERR as reported: a relay taking it over is told
	mu         sync.Mutex    // guards fd and moved against Close from another goroutine
	moved      *net.TCPConn  // what toTCPConn made of it: Close closes that
	closeOne   sync.Once
}

func newSockConn(l *loop, fd int, addr netip.AddrPort) sockConn {
	return sockConn{l: l, fd: fd, addr: addr, ready: make(chan struct{}, 1), closing: make(chan struct{})}
}

// ErrNoLoop is returned by Dial when no event loop can be used: dial
// through the net package instead.
var ErrNoLoop = errors.New("relay: no event loop")

// Dial starts connecting to addr from a relay loop, to complete by deadline
// (zero: none), with TCP_NODELAY and, with keepAlive, SO_KEEPALIVE at the
// kernel's timings. A connect that fails at once fails Dial; one still in
// progress is finished by the first Write (see ServerConn).
func Dial(addr netip.AddrPort, deadline time.Time, keepAlive bool) (*ServerConn, error) {
	l := pickLoop()
	if l == nil {
		return nil, ErrNoLoop
	}
	return dial(l, nil, addr, deadline, keepAlive)
}

// dial connects to addr from l, in a slot of its own or, with owner, in
// owner's.
func dial(l *loop, owner *ClientConn, addr netip.AddrPort, deadline time.Time, keepAlive bool) (*ServerConn, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if a := addr.Addr().Unmap(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, dialErr(addr, os.NewSyscallError("socket", err))
	}
	c := &ServerConn{sockConn: newSockConn(l, fd, addr), owner: owner}
	c.deadline, c.connectBy = deadline, deadline
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return nil, dialErr(addr, os.NewSyscallError("setsockopt", err))
	}
	if keepAlive {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); err != nil {
			unix.Close(fd)
			return nil, dialErr(addr, os.NewSyscallError("setsockopt", err))
		}
	}
	err = unix.Connect(fd, sa)
	for errors.Is(err, unix.EINTR) {
		err = unix.Connect(fd, sa)
	}
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return nil, dialErr(addr, os.NewSyscallError("connect", err))
	}
	c.connecting = err != nil
	// Registered after connect started, as Go's poller does: an unconnected
	// socket would report EPOLLHUP at once.
	if owner == nil {
		err = l.addOne(c, &c.entry, fd, server)
		if err != nil {
			l.release(&c.entry)
		}
	} else {
		err = owner.attach(c)
	}
	if err != nil {
		unix.Close(fd)
		return nil, dialErr(addr, err)
	}
	return c, nil
}

func dialErr(addr netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: err}
}

// event is told by the loop that the socket is ready.
func (c *ServerConn) event(_ int, ev uint32) { c.signal(ev) }

// signal records an edge and wakes a waiting read or write.
func (c *sockConn) signal(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable.Store(true)
	}
	if e := ev & (unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR); e != 0 {
		c.ended.Or(e)
	}
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// wait waits for the next readiness edge, the deadline (while connecting,
// the dial's too) or Close.
func (c *sockConn) wait() error {
	deadline := c.deadline
	if c.connecting && !c.connectBy.IsZero() && (deadline.IsZero() || c.connectBy.Before(deadline)) {
		deadline = c.connectBy
	}
	if deadline.IsZero() {
		select {
		case <-c.ready:
			return nil
		case <-c.closing:
			return net.ErrClosed
		}
	}
	d := time.Until(deadline)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ready:
		return nil
	case <-c.closing:
		return net.ErrClosed
	case <-t.C:
		return os.ErrDeadlineExceeded
	}
}

func (c *sockConn) sysfd() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fd
}

// Read reads what the socket has, waiting for it until the deadline. It
// reads only after an input edge: a read that drained the socket (a short
// one) is followed by nothing until bytes arrive, so the CONNACK is read
// once it is there, with no read that would block before it.
func (c *sockConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		fd := c.sysfd()
		if fd < 0 {
			return 0, c.opErr("read", net.ErrClosed)
		}
		if !c.readable.Load() {
			if err := c.wait(); err != nil {
				return 0, c.opErr("read", err)
			}
			continue
		}
		c.readable.Store(false) // an edge from here on sets it again
		n, err := rawRead(fd, p)
		switch {
		case errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.EINTR):
			c.readable.Store(true)
			continue
		case err != nil:
			c.readable.Store(true)
			return 0, c.opErr("read", os.NewSyscallError("read", err))
		case n == 0:
			c.readable.Store(true) // EOF stays readable
			if !c.connecting {
				return 0, io.EOF
			}
			return 0, c.opErr("read", io.EOF)
		}
		if n == len(p) || c.ended.Load() != 0 {
			// A full read may have left bytes; after a hang-up the EOF is
			// still to be read, and no edge will announce it (it came with
			// the bytes just read: a client that sent part of a CONNECT and
			// closed at once would wait out the connect timeout).
			c.readable.Store(true)
		}
		c.connecting = false
		return n, nil
	}
}

// Write writes all of p, waiting for room (or for the connect to complete)
// until the deadline.
func (c *sockConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		fd := c.sysfd()
		if fd < 0 {
			return done, c.opErr("write", net.ErrClosed)
		}
		n, err := rawWrite(fd, p[done:])
		if n > 0 {
			done += n
			c.connecting = false
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			if err := c.wait(); err != nil {
				return done, c.opErr("write", err)
			}
		case !errors.Is(err, unix.EINTR):
			return done, c.opErr("write", os.NewSyscallError("write", err))
		}
	}
	return done, nil
}

// opErr wraps err as the net package would; while connecting it is the
// dial's (a failed connect's error is what the first write returns).
func (c *sockConn) opErr(op string, err error) error {
	if c.connecting {
		var se *os.SyscallError
		if errors.As(err, &se) {
			err = os.NewSyscallError("connect", se.Err)
		}
		return dialErr(c.addr, err)
	}
	return &net.OpError{Op: op, Net: "tcp", Addr: c.RemoteAddr(), Err: err}
}

// Close closes the socket, unless a relay has taken it.
func (c *ServerConn) Close() error {
	fd, err := c.closeFD()
	if fd < 0 {
		return nil
	}
	if c.owner != nil {
		c.owner.detach(c) // the slot is the client's
	} else {
		c.l.release(&c.entry)
	}
	return err
}

// closeFD closes the socket unless a relay has taken it, and returns the
// descriptor it closed (-1: none).
func (c *sockConn) closeFD() (int, error) {
	c.closeOne.Do(func() { close(c.closing) })
	c.mu.Lock()
	fd, moved := c.fd, c.moved
	c.fd = -1
	c.mu.Unlock()
	if fd < 0 {
		if moved != nil {
			moved.Close()
		}
		return -1, nil
	}
	return fd, unix.Close(fd) // leaves the epoll set with its last descriptor
}

// take hands the socket to a relay: Close no longer closes it.
func (c *sockConn) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	fd := c.fd
	c.fd = -1
	return fd
}

// LocalAddr asks the kernel (nothing on the handshake's path needs it).
func (c *sockConn) LocalAddr() net.Addr {
	fd := c.sysfd()
	if fd < 0 {
		return nil
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	}
	return nil
}

// RemoteAddr is the address dialled.
func (c *sockConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.addr) }

// SetDeadline sets the one deadline of reads and writes (zero: none). Not
// to be called while a read or write waits.
func (c *sockConn) SetDeadline(t time.Time) error { c.deadline = t; return nil }

// SetReadDeadline sets the one deadline (see SetDeadline).
func (c *sockConn) SetReadDeadline(t time.Time) error { return c.SetDeadline(t) }

// SetWriteDeadline sets the one deadline (see SetDeadline).
func (c *sockConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// startAdopted relays client and s on s's loop: the pair takes s's slot
// (its socket is registered there already, as the server side) and adds
// the client's socket.
func startAdopted(c *net.TCPConn, s *ServerConn, st *Stats, opt Options, done Done) *Relay {
	cfd, err := dupFD(c)
	if err != nil {
		return nil
	}
	c.Close()
	l := s.l
	p := &pair{l: l, st: st, opt: opt, done: done, entry: s.entry}
	p.s = p
	p.fd = [2]int{cfd, s.take()}
	// Once the slot is the pair's, the loop may end it and close its
	// descriptors, whose numbers the next socket may get: it closes them
	// under cmdMu, which is held until both are registered.
	p.cmdMu.Lock()
	l.mu.Lock()
	l.slots[p.slot] = p // the server side's events are the pair's from here
	l.mu.Unlock()
	// An edge the server side had before the pair took the slot went to s:
	// re-arming the socket reports what it holds now, as an event for the
	// pair (EPOLL_CTL_MOD polls it, as ADD does).
	ev := unix.EpollEvent{Events: pairEvents}
	ev.Fd, ev.Pad = token(p.slot, p.gen, server)
	err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, p.fd[server], &ev)
	if err == nil {
		ev.Fd, ev.Pad = token(p.slot, p.gen, client)
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, cfd, &ev)
	}
	p.cmdMu.Unlock()
	if err != nil {
		p.setCmdErr(os.NewSyscallError("epoll_ctl", err))
		l.command(p)
	}
	return &p.Relay
}

// toTCPConn turns s into a net.TCPConn (Go's poller) for the goroutine
// relay, which reads and writes it from two goroutines at once.
func (s *ServerConn) toTCPConn() (*net.TCPConn, error) {
	tcp, took, err := s.sockConn.toTCPConn("server")
	switch {
	case s.owner != nil:
		s.owner.detach(s)
	case took:
		s.l.release(&s.entry)
	}
	return tcp, err
}

// toTCPConn moves the socket out of the loop and into a net.TCPConn. took
// says it had the socket (it was not closed before): the caller frees the
// slot then. It holds mu throughout, so a Close from another goroutine
// closes either this socket or the net.TCPConn's, never both.
func (c *sockConn) toTCPConn(name string) (tcp *net.TCPConn, took bool, err error) {
	c.mu.Lock()
	fd := c.fd
	if fd < 0 {
		c.mu.Unlock()
		return nil, false, net.ErrClosed
	}
	// Out of the loop's set first: the duplicate keeps the socket open, and
	// with it the registration, which closing fd alone would not remove.
	unix.EpollCtl(c.l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	f := os.NewFile(uintptr(fd), name)
	nc, err := net.FileConn(f) // a duplicate, in Go's poller
	if err == nil {
		tcp = nc.(*net.TCPConn)
	}
	c.fd, c.moved = -1, tcp
	c.mu.Unlock()
	f.Close()
	return tcp, true, err
}
