//go:build linux

package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ClientConn is an accepted client connection registered once, in a relay
// loop's epoll set, with the token of a pair's client side. The server
// connection for it is dialled into the same slot (ClientConn.Dial), as the
// pair's server side, so the pair that relays the two takes the slot over
// with no system call: no descriptor duplicated, closed or registered
// again, none of it in Go's poller.
//
// Until a relay owns it, it reads and writes as a ServerConn does (one
// goroutine at a time, one deadline for both directions, Close from any
// goroutine).
type ClientConn struct {
	sockConn
	local netip.AddrPort // the address it was accepted on; zero: ask the kernel

	hmu    sync.Mutex  // the handover: guards peer, pair and unread, and orders edges against Start
	peer   *ServerConn // the server dialled into its slot, until closed or relayed
	pair   *pair       // the relay that took the slot: edges still on their way go to it
	unread []byte      // bytes to be read before the socket's (Unread)
}

// NewClientConn takes an accepted, non-blocking socket fd and registers it
// on a relay loop. remote is its peer; local the address it was accepted
// on, when the listener's is not a wildcard (zero: LocalAddr asks the
// kernel). It fails with ErrNoLoop when no loop can be used, leaving fd to
// the caller; on any other error fd is closed.
func NewClientConn(fd int, remote, local netip.AddrPort) (*ClientConn, error) {
	l := pickLoop()
	if l == nil {
		return nil, ErrNoLoop
	}
	c := &ClientConn{sockConn: newSockConn(l, fd, remote), local: local}
	if err := l.addOne(c, &c.entry, fd, client); err != nil {
		unix.Close(fd)
		l.release(&c.entry)
		return nil, err
	}
	return c, nil
}

// event routes an edge of the slot: the client's socket, the server dialled
// into it, or, once a relay has taken the slot, the pair.
func (c *ClientConn) event(side int, ev uint32) {
	c.hmu.Lock()
	if p := c.pair; p != nil {
		c.hmu.Unlock()
		p.event(side, ev) // the loop goroutine's, as every pair event
		return
	}
	if side == client {
		c.signal(ev)
	} else if s := c.peer; s != nil {
		s.signal(ev)
	}
	c.hmu.Unlock()
}

// Dial connects to addr from the client's loop, registering the socket in
// the client's slot as its server side (see Dial for the rest). A relay of
// the two takes the slot as it is. The client may have one such server at
// a time: close it before dialling another.
func (c *ClientConn) Dial(addr netip.AddrPort, deadline time.Time, keepAlive bool) (*ServerConn, error) {
	return dial(c.l, c, addr, deadline, keepAlive)
}

// attach registers s, dialled for c, in c's slot.
func (c *ClientConn) attach(s *ServerConn) error {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.pair != nil || c.sysfd() < 0 {
		return net.ErrClosed
	}
	s.entry = c.entry
	c.peer = s
	if err := c.l.register(s.fd, &s.entry, server, pairEvents); err != nil {
		c.peer = nil
		return err
	}
	return nil
}

// detach forgets s once it is closed or moved out of the loop.
func (c *ClientConn) detach(s *ServerConn) {
	c.hmu.Lock()
	if c.peer == s {
		c.peer = nil
	}
	c.hmu.Unlock()
}

// Read reads what Unread put back first, then the socket (see ServerConn.Read).
func (c *ClientConn) Read(p []byte) (int, error) {
	c.hmu.Lock()
	if len(c.unread) > 0 {
		n := copy(p, c.unread)
		c.unread = c.unread[n:]
		c.hmu.Unlock()
		return n, nil
	}
	c.hmu.Unlock()
	return c.sockConn.Read(p)
}

// Unread puts b in front of what the socket has: the next reads return it
// first (the bytes a PROXY header's read took past the header).
func (c *ClientConn) Unread(b []byte) {
	c.hmu.Lock()
	c.unread = append(b[:len(b):len(b)], c.unread...)
	c.hmu.Unlock()
}

// TakeUnread returns and forgets what Unread put back and no read took.
func (c *ClientConn) TakeUnread() []byte {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	b := c.unread
	c.unread = nil
	return b
}

// Close closes the socket, unless a relay has taken it.
func (c *ClientConn) Close() error {
	fd, err := c.closeFD()
	if fd >= 0 {
		c.l.release(&c.entry) // a server still in the slot gets no more edges
	}
	return err
}

// RemoteAddrPort is the client's address, with no allocation.
func (c *ClientConn) RemoteAddrPort() netip.AddrPort { return c.addr }

// LocalAddrPort is the address the client connected to (asked of the
// kernel when the listener's was a wildcard).
func (c *ClientConn) LocalAddrPort() netip.AddrPort {
	if c.local.IsValid() {
		return c.local
	}
	if a, ok := c.sockConn.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// LocalAddr is the address the client connected to.
func (c *ClientConn) LocalAddr() net.Addr {
	if c.local.IsValid() {
		return net.TCPAddrFromAddrPort(c.local)
	}
	return c.sockConn.LocalAddr()
}

// Control calls f with the socket's descriptor, as syscall.RawConn's
// Control does; net.ErrClosed once it is closed or a relay has it.
func (c *ClientConn) Control(f func(fd uintptr)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return net.ErrClosed
	}
	f(uintptr(c.fd))
	return nil
}

// TCPConn moves the connection out of the relay loop into a net.TCPConn in
// Go's poller (for TLS or WebSocket, or a server that is not a ServerConn
// dialled for it): what Unread put back is lost. It fails while a server
// is dialled into its slot.
func (c *ClientConn) TCPConn() (*net.TCPConn, error) {
	c.hmu.Lock()
	busy := c.peer != nil || c.pair != nil
	c.hmu.Unlock()
	if busy {
		return nil, net.ErrClosed
	}
	tcp, took, err := c.toTCPConn("client")
	if took {
		c.l.release(&c.entry)
	}
	return tcp, err
}

// startHandover relays c and the server dialled into its slot: both sockets
// are registered there already, so the pair takes the slot with no system
// call. What the two sockets reported before (an unread input edge, their
// end) the pair is told, as it would have been by the edges.
func startHandover(c *ClientConn, s *ServerConn, st *Stats, opt Options, done Done) *Relay {
	l := c.l
	p := &pair{l: l, st: st, opt: opt, done: done, entry: c.entry}
	p.s = p
	c.hmu.Lock()
	cfd := c.take()
	if cfd < 0 { // closed, and its slot freed
		c.hmu.Unlock()
		return notStarted(done, Result{Reason: "closed", Err: net.ErrClosed}, s)
	}
	c.peer = nil
	p.fd = [2]int{cfd, s.take()}
	pending := false
	for side, sc := range [2]*sockConn{&c.sockConn, &s.sockConn} {
		if e := sc.ended.Load(); e != 0 { // the EOF is to be read, however drained the socket looked
			p.dir[side].hup = true
			p.dir[side].rdhup = e&(unix.EPOLLHUP|unix.EPOLLERR) == 0
			pending = true
		}
		pending = pending || sc.readable.Load()
	}
	l.mu.Lock()
	l.slots[p.slot] = p // the slot's edges are the pair's from here
	l.mu.Unlock()
	c.pair = p
	c.hmu.Unlock()
	switch {
	case p.fd[server] < 0:
		p.setCmdErr(net.ErrClosed)
		l.command(p)
	case pending:
		l.kick(p)
	}
	return &p.Relay
}
