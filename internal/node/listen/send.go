package listen

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Writes to a client never wait for the client. mochi writes a client's
// packets holding the client's lock, and every QoS 1/2 delivery to the
// client takes that lock first (Client.NextPacketID): a write waiting on a
// client that stopped reading would stop every publisher to its topics, the
// mesh inbox that hands other nodes' messages to this node's clients, a
// kick, a takeover. So what mochi writes (under TLS and WebSocket: bytes
// are bytes here) goes to the socket at once, without waiting; what the
// kernel does not take waits in the connection's queue, in order, written
// by a goroutine that runs only while the queue holds something and waits
// for the socket in the runtime's poller. An idle connection has neither
// queue nor goroutine.
//
// The queue is bounded in bytes (Options.MaxQueuedBytes, the node's
// mqtt.max_queued_bytes): a write that would take it over closes the
// connection as a slow consumer, at once and with a reset (nothing in the
// queue could reach the client before its turn anyway). Any write error
// closes the connection too: a packet is either written whole, followed by
// the next, or the stream ends — never a part of a packet and then more.

// DefaultMaxQueuedBytes is Options.MaxQueuedBytes when left zero.
const DefaultMaxQueuedBytes = 32 << 20

// ErrSlowConsumer is the write error of a connection closed because its
// queue went over Options.MaxQueuedBytes.
var ErrSlowConsumer = errors.New("slow consumer: more than the connection's queue bound waiting to be written")

// errWriteClosed is a write after Close or CloseWrite.
var errWriteClosed = errors.New("write after the connection was closed")

// What a sender does once its queue has drained (sender.closing).
const (
	closeNone = iota
	closeWrite
	closeAll
)

// sender is a connection's writes at the socket (a listener.Out).
type sender struct {
	tcp  *net.TCPConn
	rc   syscall.RawConn
	max  int              // queue bound, bytes
	slow func(queued int) // told when the bound closes the connection; may be nil

	mu       sync.Mutex
	q        []byte // q[off:] waits to be written; nil while nothing waits
	off      int
	draining bool  // the drain goroutine runs (q may be empty, it then ends)
	err      error // once set, every write fails with it and the socket is closed
	closing  int   // closeWrite or closeAll once the queue has drained

	// Writing at once (w, under mu): what the kernel took of p, and the
	// error, set by tryFn (a method value made once: no allocation per
	// write).
	p     []byte
	n     int
	werr  error
	tryFn func(fd uintptr) bool

	// The drain goroutine's write: as above, waiting for the socket once
	// nothing was taken.
	dp     []byte
	dn     int
	derr   error
	waitFn func(fd uintptr) bool
}

// newSender returns the sender for tcp: max is the queue bound (zero:
// DefaultMaxQueuedBytes), slow is told when the bound closes the connection.
func newSender(tcp *net.TCPConn, max int, slow func(queued int)) (*sender, error) {
	rc, err := tcp.SyscallConn()
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = DefaultMaxQueuedBytes
	}
	s := &sender{tcp: tcp, rc: rc, max: max, slow: slow}
	s.tryFn, s.waitFn = s.try, s.wait
	return s, nil
}

// Write writes p, or queues what the socket does not take now; it never
// waits for the client.
func (s *sender) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	if s.closing != closeNone {
		s.mu.Unlock()
		return 0, errWriteClosed
	}
	if s.draining {
		if queued := len(s.q) - s.off + len(p); queued > s.max {
			s.overLocked(queued) // unlocks
			return 0, ErrSlowConsumer
		}
		s.q = append(s.q, p...)
		s.mu.Unlock()
		return len(p), nil
	}
	s.p, s.n, s.werr = p, 0, nil
	err := s.rc.Write(s.tryFn)
	n := s.n
	if err == nil {
		err = s.werr
	}
	s.p = nil
	if err != nil {
		s.failLocked(err) // unlocks
		return n, err
	}
	if n == len(p) {
		s.mu.Unlock()
		return n, nil
	}
	if queued := len(p) - n; queued > s.max {
		s.overLocked(queued)
		return 0, ErrSlowConsumer
	}
	if s.q == nil {
		s.q = (*queueBufs.Get().(*[]byte))[:0]
	}
	s.q = append(s.q[:0], p[n:]...)
	s.off = 0
	s.draining = true
	s.mu.Unlock()
	go s.drain()
	return len(p), nil
}

var queueBufs = sync.Pool{New: func() any { return new([]byte) }}

// try writes s.p without waiting (s.mu held): as much as the socket takes.
func (s *sender) try(fd uintptr) bool {
	s.n, s.werr = writeSome(fd, s.p, s.n)
	return true
}

// wait writes s.dp, waiting for the socket only while it takes nothing.
func (s *sender) wait(fd uintptr) bool {
	n := s.dn
	s.dn, s.derr = writeSome(fd, s.dp, s.dn)
	return s.dn > n || s.derr != nil || s.dn == len(s.dp)
}

// writeSome writes p[n:] to fd until it is all written, the socket is full
// (EAGAIN: no error) or a write fails; it returns how much of p is written.
func writeSome(fd uintptr, p []byte, n int) (int, error) {
	for n < len(p) {
		m, err := syscall.Write(int(fd), p[n:])
		if m > 0 {
			n += m
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return n, nil
		case err != nil:
			return n, err
		case m == 0:
			return n, io.ErrUnexpectedEOF
		}
	}
	return n, nil
}

// drain writes the queue out, waiting for the socket, until it is empty or
// a write fails; then it does the close asked for meanwhile.
func (s *sender) drain() {
	for {
		s.mu.Lock()
		if s.err != nil {
			s.draining = false
			s.mu.Unlock()
			return
		}
		if s.off == len(s.q) {
			s.draining = false
			s.releaseLocked()
			closing := s.closing
			s.mu.Unlock()
			switch closing {
			case closeWrite:
				_ = s.tcp.CloseWrite()
			case closeAll:
				_ = s.tcp.Close()
			}
			return
		}
		// Writers append to s.q past this slice while it is written: the
		// bytes in it do not change.
		s.dp, s.dn, s.derr = s.q[s.off:], 0, nil
		s.mu.Unlock()

		err := s.rc.Write(s.waitFn)
		n := s.dn
		if err == nil {
			err = s.derr
		}
		s.dp = nil

		s.mu.Lock()
		if s.err != nil { // closed meanwhile (slow consumer): the queue is gone
			s.draining = false
			s.mu.Unlock()
			return
		}
		s.off += n
		if err != nil {
			s.draining = false
			s.failLocked(err)
			return
		}
		if s.off > len(s.q)/2 { // keep the queue's array from growing for ever
			k := copy(s.q, s.q[s.off:])
			s.q, s.off = s.q[:k], 0
		}
		s.mu.Unlock()
	}
}

// releaseLocked gives the empty queue's array back (s.mu held).
func (s *sender) releaseLocked() {
	if s.q != nil && cap(s.q) <= 64<<10 {
		b := s.q[:0]
		queueBufs.Put(&b)
	}
	s.q, s.off = nil, 0
}

// failLocked ends the connection after a failed write (s.mu held; it
// unlocks): the stream cannot go on from a part of a packet.
func (s *sender) failLocked(err error) {
	if s.err == nil {
		s.err = err
	}
	s.q, s.off = nil, 0
	s.mu.Unlock()
	_ = s.tcp.Close()
}

// overLocked closes a slow consumer (s.mu held; it unlocks): with a reset,
// which drops what the kernel still holds for it too.
func (s *sender) overLocked(queued int) {
	first := s.err == nil
	if first {
		s.err = ErrSlowConsumer
	}
	s.q, s.off = nil, 0
	s.mu.Unlock()
	_ = s.tcp.SetLinger(0)
	_ = s.tcp.Close()
	if first && s.slow != nil {
		s.slow(queued)
	}
}

// CloseWrite shuts the write side down once the queue has drained (within
// lingerTime).
func (s *sender) CloseWrite() error {
	return s.close(closeWrite)
}

// Close closes the socket once the queue has drained, or after lingerTime
// if it has not.
func (s *sender) Close() error {
	return s.close(closeAll)
}

func (s *sender) close(how int) error {
	s.mu.Lock()
	if s.err != nil { // the socket is closed
		s.mu.Unlock()
		if how == closeAll {
			return nil
		}
		return s.err
	}
	if s.draining {
		if s.closing == closeNone {
			// The drain waits for the socket no longer than this.
			_ = s.tcp.SetWriteDeadline(time.Now().Add(lingerTime))
		}
		s.closing = max(s.closing, how)
		s.mu.Unlock()
		return nil
	}
	s.closing = max(s.closing, how)
	s.mu.Unlock()
	if how == closeWrite {
		return s.tcp.CloseWrite()
	}
	return s.tcp.Close()
}

// Queued returns how many bytes wait to be written (for tests).
func (s *sender) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q) - s.off
}
