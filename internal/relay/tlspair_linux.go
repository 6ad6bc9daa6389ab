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
// tlsServerToClient reads the server and encrypts with tls.Conn.Write. It
// copies through a pooled buffer, waiting in Go's poller while bytes keep
// coming; after tlsLinger of silence it reads on without waiting until its
// source would block — for the client, until crypto/tls holds no whole
// record (its reads of the Socket then return rather than wait), so nothing
// decrypted is left behind — re-arms the socket and exits. Writes wait in
// Go's poller (the net.Conns stay open for them): a full destination holds
// back its direction and only it, and closing the connections stops them.
type tlsPair struct {
	Relay // its handle: Close stops the pair
	entry
	l      *loop
	fd     [2]int // duplicates of the sockets, watched by the loop
	tc     *tls.Conn
	sock   *Socket // under tc
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
	p := &tlsPair{l: l, fd: [2]int{cfd, sfd}, tc: tc, sock: sock, server: s, st: st, opt: opt, done: done}
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

// tlsLinger is how long a direction's goroutine waits for more once its
// source is silent before it leaves the socket to the loop and exits: a
// busy connection is served as by a goroutine relay (Go's poller wakes it;
// no goroutine is started, no socket re-armed per burst); a connection is
// idle, and costs no goroutine or buffer, after this much silence. Short,
// so that a burst of new connections does not add up to many goroutines
// and buffers at once.
const tlsLinger = 10 * time.Millisecond

// tlsClientToServer is a TLS pair's upstream copy, while the client sends
// (named so stack dumps read).
func tlsClientToServer(p *tlsPair) { p.serve(client) }

// tlsServerToClient is a TLS pair's downstream copy, while the server sends.
func tlsServerToClient(p *tlsPair) { p.serve(server) }

// serve runs direction d through a pooled buffer until its source has been
// silent for tlsLinger (the loop then watches it again), or it ends.
func (p *tlsPair) serve(d int) {
	bp := bufPool.Get().(*[]byte)
	side, err := p.copyWhileBusy(d, *bp)
	bufPool.Put(bp)
	p.stopped(d, side, err)
}

// copyWhileBusy copies direction d, its reads waiting for more until the
// source has been silent for about tlsLinger; then it reads on without
// waiting until the source would block (os.ErrDeadlineExceeded, with
// nothing left inside crypto/tls), and if that moves nothing, returns. It
// also returns the error that ends the direction and the side whose socket
// had it.
func (p *tlsPair) copyWhileBusy(d int, buf []byte) (int, error) {
	for {
		_, side, err := p.copyUntil(d, buf, true)
		if side != d || !errors.Is(err, os.ErrDeadlineExceeded) {
			return side, err
		}
		// The deadline may have passed during a write, before a read:
		// read on without waiting to find out whether the source is empty.
		moved, side, err := p.copyUntil(d, buf, false)
		if !moved || side != d || !errors.Is(err, os.ErrDeadlineExceeded) {
			return side, err
		}
	}
}

// copyUntil copies direction d until a read or write fails (a timeout is
// a failure here). With wait, reads wait for bytes up to tlsLinger after
// the last ones (the deadline is moved at most every half of it); without,
// they do not wait. moved says whether any byte was copied.
func (p *tlsPair) copyUntil(d int, buf []byte, wait bool) (moved bool, side int, err error) {
	var until time.Time
	if wait {
		until = time.Now().Add(tlsLinger)
		p.waitUntil(d, until)
		defer p.waitUntil(d, time.Time{})
	}
	for {
		k, rerr := p.read(d, buf, wait)
		if k > 0 {
			if err := p.write(d, buf[:k]); err != nil {
				return moved, 1 - d, err
			}
			p.count(d, k)
			moved = true
			if wait {
				until = p.moveDeadline(d, until)
			}
		}
		if rerr != nil {
			return moved, d, rerr
		}
	}
}

// moveDeadline moves d's read deadline to tlsLinger from now, if less
// than half of that is left.
func (p *tlsPair) moveDeadline(d int, until time.Time) time.Time {
	if now := time.Now(); until.Sub(now) < tlsLinger/2 {
		until = now.Add(tlsLinger)
		p.waitUntil(d, until)
	}
	return until
}

// waitUntil sets how long reads of d's source wait for bytes: until t, as
// a net.Conn's read deadline; t zero, not at all (crypto/tls over a Socket;
// the server's duplicate, read by read).
func (p *tlsPair) waitUntil(d int, t time.Time) {
	if d == client {
		p.sock.waitUntil(t)
	} else {
		p.server.SetReadDeadline(t)
	}
}

// read reads d's source: the client decrypted by crypto/tls, or the server.
func (p *tlsPair) read(d int, buf []byte, wait bool) (int, error) {
	switch {
	case d == client:
		return p.tc.Read(buf)
	case wait:
		return p.server.Read(buf)
	}
	k, err := readRetry(p.fd[server], buf)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return 0, os.ErrDeadlineExceeded
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case k == 0:
		return 0, io.EOF
	}
	return k, nil
}

// write writes to d's destination: the server, or the client through
// crypto/tls.
func (p *tlsPair) write(d int, b []byte) error {
	var err error
	if d == client {
		_, err = p.server.Write(b)
	} else {
		_, err = p.tc.Write(b)
	}
	return err
}

// count adds k bytes moved in direction d.
func (p *tlsPair) count(d, k int) {
	if d == client {
		p.st.In.Add(int64(k))
	} else {
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
	p.mu.Lock()
	p.markEnded(d, nil) // before the peer can see the EOF and answer
	if p.nEnded == 2 {
		p.closing = true
	} else if p.opt.FinTimeout > 0 && !p.closing {
		p.fin = time.AfterFunc(p.opt.FinTimeout, p.finTimeout)
	}
	p.mu.Unlock()
	if d == client {
		p.server.CloseWrite()
	} else {
		closeWrite(p.tc)
	}
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
