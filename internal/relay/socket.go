package relay

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Socket is a client's TCP connection as a TLS layer over it reads it. A
// TLS-terminated client whose connection is a Socket (tls.Conn.NetConn, or
// a type embedding one) is relayed with no goroutine while it is idle
// (Linux); one that is not is relayed by two goroutines.
//
// Until the relay serves it, a Socket reads as its net.TCPConn does. From
// then on the relay sets how long reads wait: until a deadline, or not at
// all — a read that finds no bytes returns os.ErrDeadlineExceeded at once,
// as if a read deadline had passed. crypto/tls takes either for a timeout,
// keeps what it has of a record and goes on from there at the next Read
// (conn.go, readRecordOrCCS: a net.Error that is Temporary is not made the
// connection's error).
type Socket struct {
	*net.TCPConn
	now atomic.Bool     // reads return instead of waiting
	rc  syscall.RawConn // set before now
}

// Read reads from the socket: see Socket.
func (s *Socket) Read(p []byte) (int, error) {
	if !s.now.Load() {
		return s.TCPConn.Read(p)
	}
	return readNow(s.rc, s.TCPConn, p)
}

// socket finds the Socket in a type that embeds one.
func (s *Socket) socket() *Socket { return s }

// readWithoutWaiting makes later reads return when the socket is empty.
func (s *Socket) readWithoutWaiting() error {
	rc, err := s.TCPConn.SyscallConn()
	if err != nil {
		return err
	}
	s.rc = rc
	s.now.Store(true)
	return nil
}

// waitUntil makes reads wait for bytes until t, as net.TCPConn's do with a
// read deadline; t zero, not at all.
func (s *Socket) waitUntil(t time.Time) {
	s.TCPConn.SetReadDeadline(t)
	s.now.Store(t.IsZero())
}
