//go:build linux

package relay

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sides of a pair: each socket is the source of one direction and the
// destination of the other. Direction up (client→server) reads side client.
const (
	client = 0
	server = 1
)

// pair is one relayed TCP connection pair owned by a loop. Its sockets are
// duplicates the relay alone holds: the net.TCPConns handed to Start are
// closed at once, so nothing else can close or reuse these descriptors.
type pair struct {
	Relay // its handle: Close stops the pair
	entry
	l    *loop
	fd   [2]int
	dir  [2]direction // [client]: client→server, [server]: server→client
	st   *Stats
	opt  Options
	done Done

	closed bool // loop goroutine only
	more   bool // queued on the loop's runnable list
	nEnded int8 // directions ended
	first  int8 // the direction that ended first, once nEnded > 0
	fin    *time.Timer

	cmdMu   sync.Mutex // guards cmdErr_; held while the descriptors are closed
	cmdErr_ error      // why a command asked to close it
}

// direction is one way's state: bytes held back for a full destination
// (what a copy could not write, or a splice's pipe), how its source is
// read, and whether (and why) it has ended. The pair records which
// direction ended first rather than when each did.
type direction struct {
	p       *pipe              // spliced bytes in flight; nil otherwise
	pend    []byte             // copied bytes the destination did not take
	pendBuf *[copyBufSize]byte // pend's buffer, from the loop's pool
	err     error              // why it ended: nil is its source's EOF
	blocked bool               // the destination was full: wait for its EPOLLOUT edge
	bulk    bool               // the last read filled the copy buffer: splice the next
	hup     bool               // the source reported EPOLLRDHUP/HUP/ERR: read to its end
	rdhup   bool               // the source reported EPOLLRDHUP alone: its FIN is in, after all its bytes
	ended   bool
}

var sideNames = [2]string{client: "client", server: "server"}

// maxBurst bounds the reads one direction makes per wake, so one busy
// connection cannot hold the loop; it continues after the others.
const maxBurst = 16

// startSplice hands client and server to an event loop, or returns nil when
// that cannot be done (the goroutine relay is used then).
func startSplice(c, s *net.TCPConn, st *Stats, opt Options, done Done) *Relay {
	l := pickLoop()
	if l == nil {
		return nil
	}
	cfd, err1 := dupFD(c)
	sfd, err2 := dupFD(s)
	if err1 != nil || err2 != nil {
		closeFDs(cfd, sfd)
		return nil
	}
	c.Close() // the duplicates keep the sockets open
	s.Close()
	p := &pair{l: l, fd: [2]int{cfd, sfd}, st: st, opt: opt, done: done}
	p.s = p
	if err := l.add(p, &p.entry, p.fd, pairEvents); err != nil {
		p.setCmdErr(err)
		l.command(p)
	}
	return &p.Relay
}

// stop asks the loop to close the pair (Relay.Close).
func (p *pair) stop() {
	p.setCmdErr(net.ErrClosed)
	p.l.command(p)
}

// count adds k bytes moved in direction d.
func (p *pair) count(d, k int) {
	if d == client {
		p.st.In.Add(int64(k))
	} else {
		p.st.Out.Add(int64(k))
	}
}

func dupFD(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) })
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}

func closeFDs(fds ...int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// event handles readiness of one side: its direction may read, and the
// other direction may write if it was blocked.
func (p *pair) event(side int, ev uint32) {
	if p.closed {
		return
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && p.dir[1-side].blocked {
		p.pump(1 - side)
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		p.dir[side].hup = true
		p.dir[side].rdhup = ev&(unix.EPOLLHUP|unix.EPOLLERR) == 0
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		p.pump(side)
	}
}

// pumpBoth continues both directions (after a fairness stop).
func (p *pair) pumpBoth() {
	p.pump(client)
	p.pump(server)
}

// pump moves bytes for direction d until its source is drained, its
// destination is full, it ends, or it has had its share of this wake.
//
// Small reads (an MQTT connection's usual traffic) are copied through the
// loop's buffer: read then write, two system calls and no pipe. A read that
// fills the buffer means a large transfer: the next reads are spliced
// through a pipe, with no copy, until a splice comes back short. Bytes a
// full destination does not take are held back (in a buffer from the loop's
// pool, or in the pipe) and nothing more is read until they are written.
func (p *pair) pump(d int) {
	dir := &p.dir[d]
	for i := 0; !p.closed && !dir.ended; i++ {
		if i == maxBurst {
			p.requeue()
			return
		}
		if !p.flush(d) {
			return // destination full: its EPOLLOUT edge resumes us
		}
		if dir.bulk {
			// A short splice does not mean the socket is empty (a pipe
			// fills by slots, one per segment, so 16 small segments fill
			// it): only EAGAIN does. Stay in bulk mode across wakes
			// (EAGAIN) until a splice is small.
			k, ok := p.splice(d)
			dir.bulk = k >= copyBufSize || (!ok && !dir.ended)
			if !ok {
				return
			}
			continue // the pipe is written by flush
		}
		k, ok := p.copy(d)
		if !ok {
			return
		}
		// A short read emptied the socket's receive queue: bytes that come
		// later raise a new edge. Unless the source has reported its end,
		// which raises no further edge: read on to the EOF, or, when it
		// reported its FIN (RDHUP, no error), take the short read as the
		// end, as HAProxy does: TCP queues a FIN only after every byte
		// before it, so the queue this read emptied held the last of them.
		if k < copyBufSize && dir.rdhup {
			p.sourceEOF(d)
			return
		}
		if k < copyBufSize && !dir.hup {
			return
		}
		dir.bulk = k == copyBufSize
	}
}

func (p *pair) requeue() {
	if !p.more {
		p.more = true
		p.l.runnable = append(p.l.runnable, p)
	}
}

// copy reads d's source into the loop's buffer and writes it to d's
// destination; what the destination does not take is held back for flush.
// ok is false when there was nothing (EAGAIN), the direction ended (EOF or
// error) or the destination is full.
func (p *pair) copy(d int) (int, bool) {
	dir := &p.dir[d]
	buf := p.l.buf[:]
	k, err := readRetry(p.fd[d], buf)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return 0, false
	case err != nil:
		p.fail(d, os.NewSyscallError("read", err))
		return 0, false
	case k == 0:
		p.sourceEOF(d)
		return 0, false
	}
	w, err := writeRetry(p.fd[1-d], buf[:k])
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		p.fail(1-d, os.NewSyscallError("write", err))
		return 0, false
	}
	w = max(w, 0)
	p.count(d, w)
	if w == k {
		return k, true
	}
	// The destination is full: the rest waits for its EPOLLOUT edge.
	dir.pendBuf = p.l.getBuf()
	dir.pend = dir.pendBuf[:copy(dir.pendBuf[:], buf[w:k])]
	dir.blocked = true
	dir.bulk = k == copyBufSize
	return k, false
}

// splice moves d's source into its pipe, with no copy. ok is false when
// there was nothing (EAGAIN) or the direction ended (EOF or error).
func (p *pair) splice(d int) (int, bool) {
	dir := &p.dir[d]
	if dir.p == nil {
		pp, err := p.l.getPipe()
		if err != nil {
			p.closeNow(err)
			return 0, false
		}
		dir.p = pp
	}
	k, err := spliceRetry(p.fd[d], dir.p.w, maxChunk)
	switch {
	case errors.Is(err, unix.EAGAIN):
		p.l.putPipe(dir.p)
		dir.p = nil
		return 0, false
	case err != nil:
		p.fail(d, os.NewSyscallError("splice", err))
		return 0, false
	case k == 0:
		p.sourceEOF(d)
		return 0, false
	}
	dir.p.data = k
	return k, true
}

// flush writes what d holds back — bytes a copy could not write, or a
// splice's pipe — to its destination; false means the destination is full
// (or the pair closed on an error).
func (p *pair) flush(d int) bool {
	dir := &p.dir[d]
	for len(dir.pend) > 0 {
		k, err := writeRetry(p.fd[1-d], dir.pend)
		if errors.Is(err, unix.EAGAIN) {
			dir.blocked = true
			return false
		}
		if err != nil {
			p.fail(1-d, os.NewSyscallError("write", err))
			return false
		}
		dir.pend = dir.pend[k:]
		p.count(d, k)
	}
	if dir.pendBuf != nil {
		p.l.putBuf(dir.pendBuf)
		dir.pendBuf, dir.pend = nil, nil
	}
	dir.blocked = false
	if dir.p == nil {
		return true
	}
	for dir.p.data > 0 {
		k, err := spliceRetry(dir.p.r, p.fd[1-d], dir.p.data)
		if errors.Is(err, unix.EAGAIN) {
			dir.blocked = true
			return false
		}
		if err != nil {
			p.fail(1-d, os.NewSyscallError("splice", err))
			return false
		}
		dir.p.data -= k
		p.count(d, k)
	}
	dir.blocked = false
	p.l.putPipe(dir.p)
	dir.p = nil
	return true
}

// sourceEOF half-closes the other side so its peer sees EOF too, and bounds
// the other direction by the fin timeout; a second EOF ends the pair.
func (p *pair) sourceEOF(d int) {
	p.markEnded(d, nil)
	if p.dir[d].p != nil {
		p.l.putPipe(p.dir[d].p)
		p.dir[d].p = nil
	}
	if p.nEnded == 2 {
		p.closeNow(nil)
		return
	}
	unix.Shutdown(p.fd[1-d], unix.SHUT_WR)
	if p.opt.FinTimeout > 0 {
		p.fin = time.AfterFunc(p.opt.FinTimeout, func() { p.setCmdErr(errFinTimeout); p.l.command(p) })
	}
}

// fail ends the pair for an error on socket side: the direction reading
// that socket is recorded as ending first, so the result names the side.
func (p *pair) fail(side int, err error) {
	p.markEnded(side, err)
	p.closeNow(err)
}

// markEnded records that direction d ended, unless it had: err nil is its
// source's EOF.
func (p *pair) markEnded(d int, err error) {
	dir := &p.dir[d]
	if dir.ended {
		return
	}
	dir.ended, dir.err = true, err
	if p.nEnded == 0 {
		p.first = int8(d)
	}
	p.nEnded++
}

// closeNow ends the pair on the loop goroutine: directions still open end
// with err, sockets leave the epoll set and close, done is told.
func (p *pair) closeNow(err error) {
	if p.closed {
		return
	}
	p.closed = true
	p.markEnded(server, err) // when both end here, the server side names the result
	p.markEnded(client, err)
	for d := range p.dir {
		dir := &p.dir[d]
		if dir.p != nil {
			dir.p.close() // bytes still in flight are lost with the connection
			dir.p = nil
		}
		if dir.pendBuf != nil {
			p.l.putBuf(dir.pendBuf)
			dir.pendBuf, dir.pend = nil, nil
		}
	}
	p.cmdMu.Lock() // not while startAdopted registers them
	for side := range p.fd {
		// The relay holds the only descriptor of each socket, so closing
		// it takes it out of the epoll set too: no EPOLL_CTL_DEL.
		unix.Close(p.fd[side])
	}
	p.cmdMu.Unlock()
	if p.fin != nil {
		p.fin.Stop()
	}
	p.l.release(&p.entry)
	res := end{err: p.dir[p.first].err}.result(sideNames[p.first])
	go p.done.RelayDone(res)
}

func (p *pair) setCmdErr(err error) {
	p.cmdMu.Lock()
	if p.cmdErr_ == nil {
		p.cmdErr_ = err
	}
	p.cmdMu.Unlock()
}

func (p *pair) cmdErr() error {
	p.cmdMu.Lock()
	defer p.cmdMu.Unlock()
	return p.cmdErr_
}
