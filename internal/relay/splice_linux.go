//go:build linux

package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxChunk is the most one splice asks for (a pipe holds 64 KiB in 16
// slots, so it stops well before).
const maxChunk = 1 << 20

// pipe is a kernel pipe used as the splice buffer between two sockets. Loops
// own their pipes and close them explicitly (no GC cleanup: closing a
// descriptor number twice could close someone else's socket).
type pipe struct {
	r, w int
	data int // bytes in the pipe not yet written out
}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// waitReadable parks until c has data (or EOF or an error) without holding a
// buffer. It consumes nothing.
func waitReadable(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR)
	})
}

// readNow reads c (whose raw connection is rc) once, without waiting: an
// empty socket is os.ErrDeadlineExceeded (see Socket).
func readNow(rc syscall.RawConn, c *net.TCPConn, p []byte) (int, error) {
	var k int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		k, rerr = readRetry(int(fd), p)
		return true // never wait in Go's poller
	})
	switch {
	case err != nil:
		return 0, err // closed
	case errors.Is(rerr, unix.EAGAIN):
		return 0, os.ErrDeadlineExceeded
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case k == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return k, nil
}

// readRetry, writeRetry and spliceRetry are the loop's system calls on its
// non-blocking descriptors (raw: raw_linux.go), retried when a signal
// interrupts them.
func readRetry(fd int, b []byte) (int, error) {
	for {
		k, err := rawRead(fd, b)
		if err != unix.EINTR {
			return k, err
		}
	}
}

func writeRetry(fd int, b []byte) (int, error) {
	for {
		k, err := rawWrite(fd, b)
		if err != unix.EINTR {
			return k, err
		}
	}
}

func spliceRetry(in, out, n int) (int, error) {
	for {
		k, err := rawSplice(in, out, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err != unix.EINTR {
			return k, err
		}
	}
}
