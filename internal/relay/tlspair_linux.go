//go:build linux

package relay

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// tlsPair relays a TLS-terminated client to a plain TCP server with no
// goroutine while the connection is idle. An event loop watches both
// sockets (duplicates, one-shot EPOLLIN); when one has something to read, a
// goroutine is started for the direction that reads it —
// tlsClientToServer decrypts with tls.Conn.Read and writes to the server,
// tlsServerToClient reads the server and encrypts with tls.Conn.Write — and
// copies through a pooled buffer until its source would block. Then it
// re-arms the socket and exits. The client side only would-blocks once
// crypto/tls holds no whole record (its reads of the Socket return rather
// than wait), so nothing decrypted is left behind. Writes wait in Go's
// poller (the net.Conns stay open for them): a full destination holds back
// its direction and only it, and closing the connections stops them.
type tlsPair struct {
	Relay // its handle: Close stops the pair
	entry
	l      *loop
	fd     [2]int // duplicates of the sockets, watched by the loop
	tc     *tls.Conn
	server *net.TCPConn
	st     *Stats
	opt    Options
	done   Done

	mu       sync.Mutex // guards what follows
	running  [2]bool    // a goroutine serves the direction reading this side
	ended    [2]bool
	errs     [2]error // why each direction ended: nil is its source's EOF
	first    int8     // the direction that ended first, once nEnded > 0
	nEnded   int8
	closing  bool // no goroutine starts; the last one out finishes
	finished bool
	fin      *time.Timer
}

// tlsEvents is how a TLS pair's sockets are watched: level-triggered and
// one-shot, so re-arming a socket that has bytes raises an event at once.
const tlsEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// startTLS hands a TLS client over sock and a TCP server to an event loop,
// or returns nil when that cannot be done (the goroutine relay is used).
func startTLS(tc *tls.Conn, sock *Socket, s *net.TCPConn, st *Stats, opt Options, done Done) *Relay {
	l := pickLoop()
	if l == nil {
		return nil
	}
	cfd, err1 := dupFD(sock.TCPConn)
	sfd, err2 := dupFD(s)
	if err1 != nil || err2 != nil {
		closeFDs(cfd, sfd)
		return nil
	}
	if err := sock.readWithoutWaiting(); err != nil {
		closeFDs(cfd, sfd)
		return nil
	}
	p := &tlsPair{l: l, fd: [2]int{cfd, sfd}, tc: tc, server: s, st: st, opt: opt, done: done}
	p.s = p
	// crypto/tls may hold bytes the client sent after its CONNECT, which
	// no socket event announces: the client side is read first.
	p.running[client] = true
	if err := l.add(p, &p.entry, p.fd, tlsEvents); err != nil {
		p.abort(err)
		p.exit(client, false)
		return &p.Relay
	}
	go tlsClientToServer(p)
	return &p.Relay
}

// stop ends the pair (Relay.Close).
func (p *tlsPair) stop() { p.abort(net.ErrClosed) }

// event starts a goroutine for the direction reading side, which the loop
// found readable (or hung up), unless one runs or the direction ended.
func (p *tlsPair) event(side int, _ uint32) {
	p.mu.Lock()
	start := !p.closing && !p.running[side] && !p.ended[side]
	if start {
		p.running[side] = true
	}
	p.mu.Unlock()
	switch {
	case !start:
	case side == client:
		go tlsClientToServer(p)
	default:
		go tlsServerToClient(p)
	}
}

// tlsClientToServer is a TLS pair's upstream copy, while the client has
// bytes (named so stack dumps read).
func tlsClientToServer(p *tlsPair) {
	bp := bufPool.Get().(*[]byte)
	side, err := p.copyUp(*bp)
	bufPool.Put(bp)
	p.stopped(client, side, err)
}

// copyUp decrypts the client's bytes and writes them to the server until
// an error on one side; os.ErrDeadlineExceeded from the client is "would
// block".
func (p *tlsPair) copyUp(buf []byte) (int, error) {
	for {
		k, rerr := p.tc.Read(buf)
		if k > 0 {
			if _, err := p.server.Write(buf[:k]); err != nil {
				return server, err
			}
			p.st.In.Add(int64(k))
		}
		if rerr != nil {
			return client, rerr
		}
	}
}

// tlsServerToClient is a TLS pair's downstream copy, while the server has
// bytes.
func tlsServerToClient(p *tlsPair) {
	bp := bufPool.Get().(*[]byte)
	side, err := p.copyDown(*bp)
	bufPool.Put(bp)
	p.stopped(server, side, err)
}

// copyDown reads the server and writes through TLS to the client, as
// copyUp the other way.
func (p *tlsPair) copyDown(buf []byte) (int, error) {
	for {
		k, err := readRetry(p.fd[server], buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return server, os.ErrDeadlineExceeded
		case err != nil:
			return server, os.NewSyscallError("read", err)
		case k == 0:
			return server, io.EOF
		}
		if _, err := p.tc.Write(buf[:k]); err != nil {
			return client, err
		}
		p.st.Out.Add(int64(k))
	}
}

// stopped ends direction d's goroutine for err on side's socket: the source
// would block (wait for the loop), ended, or failed.
func (p *tlsPair) stopped(d, side int, err error) {
	switch {
	case side == d && errors.Is(err, os.ErrDeadlineExceeded):
		p.exit(d, true)
	case side == d && err == io.EOF:
		p.sourceEOF(d)
	default:
		p.fail(d, side, err)
	}
}

// sourceEOF half-closes the other side so its peer sees EOF too (for the
// client: close_notify, then the TCP FIN) and bounds the other direction by
// the fin timeout; when both have ended the pair finishes.
func (p *tlsPair) sourceEOF(d int) {
	if d == client {
		p.server.CloseWrite()
	} else {
		closeWrite(p.tc)
	}
	p.mu.Lock()
	p.markEnded(d, nil)
	if p.nEnded == 2 {
		p.closing = true
	} else if p.opt.FinTimeout > 0 && !p.closing {
		p.fin = time.AfterFunc(p.opt.FinTimeout, p.finTimeout)
	}
	p.mu.Unlock()
	p.exit(d, false)
}

func (p *tlsPair) finTimeout() { p.abort(errFinTimeout) }

// fail ends the pair for an error on socket side, found by direction d's
// goroutine: the direction reading that socket is recorded as ending
// first, so the result names the side (as a loop's TCP pair does).
func (p *tlsPair) fail(d, side int, err error) {
	p.mu.Lock()
	p.markEnded(side, err)
	p.mu.Unlock()
	p.abort(err)
	p.exit(d, false)
}

// abort ends the pair early (an error, Close, the fin timeout): directions
// still open end with err, and both connections are closed, which stops a
// goroutine waiting to write. The last goroutine out finishes the pair; if
// none runs, a goroutine of its own does (Close's caller is not told from
// its own call).
func (p *tlsPair) abort(err error) {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	p.closing = true
	p.markEnded(server, err) // when both end here, the server side names the result
	p.markEnded(client, err)
	idle := !p.running[client] && !p.running[server]
	p.finished = idle
	p.mu.Unlock()
	p.tc.Close()
	p.server.Close()
	if idle {
		go p.finish()
	}
}

// exit is the end of direction d's goroutine: the socket it reads is
// re-armed when rearm is set (its source would block) and the pair goes
// on; the last goroutine out of a closing pair finishes it.
func (p *tlsPair) exit(d int, rearm bool) {
	p.mu.Lock()
	if rearm && !p.closing {
		if err := p.arm(d); err != nil {
			p.mu.Unlock()
			p.fail(d, d, err)
			return
		}
	}
	p.running[d] = false
	last := p.closing && !p.running[1-d] && !p.finished
	p.finished = p.finished || last
	p.mu.Unlock()
	if last {
		p.finish()
	}
}

// arm re-arms the loop's watch on side's socket (p.mu held, so the
// descriptor is open).
func (p *tlsPair) arm(side int) error {
	ev := unix.EpollEvent{Events: tlsEvents}
	ev.Fd, ev.Pad = token(p.slot, p.gen, side)
	if err := unix.EpollCtl(p.l.epfd, unix.EPOLL_CTL_MOD, p.fd[side], &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// markEnded records that direction d ended, unless it had (p.mu held).
func (p *tlsPair) markEnded(d int, err error) {
	if p.ended[d] {
		return
	}
	p.ended[d], p.errs[d] = true, err
	if p.nEnded == 0 {
		p.first = int8(d)
	}
	p.nEnded++
}

// finish runs once, with no goroutine at work: it closes both connections
// and the loop's duplicates (the sockets' last descriptors, so they leave
// the epoll set), frees the slot and tells done.
func (p *tlsPair) finish() {
	if p.fin != nil {
		p.fin.Stop()
	}
	p.tc.Close()
	p.server.Close()
	closeFDs(p.fd[:]...)
	p.l.release(&p.entry)
	p.done.RelayDone(end{err: p.errs[p.first]}.result(sideNames[p.first]))
}
