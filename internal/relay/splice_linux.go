//go:build linux

package relay

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceFlags: move pages rather than copy, and never block on the pipe (the
// sockets are non-blocking already; Go's poller does the waiting).
const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// maxChunk is the most one splice asks for; a pipe holds 64 KiB by default.
const maxChunk = 1 << 20

// pipe is a kernel pipe used as the splice buffer between two sockets.
type pipe struct {
	r, w int
	data int // bytes in the pipe not yet written out
}

var pipePool sync.Pool

func getPipe() (*pipe, error) {
	if p, ok := pipePool.Get().(*pipe); ok {
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &pipe{r: fds[0], w: fds[1]}
	// A pooled pipe dropped by the GC closes its descriptors.
	runtime.AddCleanup(p, func(fds [2]int) { unix.Close(fds[0]); unix.Close(fds[1]) }, fds)
	return p, nil
}

// putPipe returns an empty pipe to the pool; a pipe still holding data is
// left to the GC (its cleanup closes it) because the data is garbage now.
func putPipe(p *pipe) {
	if p.data == 0 {
		pipePool.Put(p)
	}
}

// splicer is one direction's splice state, reused for every chunk.
type splicer struct {
	src, dst syscall.RawConn
	p        *pipe
	err      error
	writing  bool                  // which of fill and drain poll calls
	poll     func(fd uintptr) bool // one closure for both, made once
}

// bind makes the poll closure, once per direction.
func (sp *splicer) bind() {
	sp.poll = func(fd uintptr) bool {
		if sp.writing {
			return sp.drain(fd)
		}
		return sp.fill(fd)
	}
}

// in waits until src has data and splices it into a pipe. The pipe is taken
// only when data is there, so a waiting connection holds none. It returns
// nil, nil at EOF.
func (sp *splicer) in() (*pipe, error) {
	sp.err = nil
	sp.writing = false
	err := sp.src.Read(sp.poll)
	if err == nil {
		err = sp.err
	}
	if err != nil || sp.p.data == 0 {
		if sp.p != nil {
			putPipe(sp.p)
			sp.p = nil
		}
		return nil, err
	}
	return sp.p, nil
}

// fill is called by the poller when src may be readable; false means wait.
func (sp *splicer) fill(fd uintptr) bool {
	if sp.p == nil {
		if sp.p, sp.err = getPipe(); sp.err != nil {
			return true
		}
	}
	for {
		k, err := unix.Splice(int(fd), nil, sp.p.w, nil, maxChunk, spliceFlags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			putPipe(sp.p) // wait for readability without holding the pipe
			sp.p = nil
			return false
		case err != nil:
			sp.err = os.NewSyscallError("splice", err)
		default:
			sp.p.data = int(k) // 0: EOF
		}
		return true
	}
}

// out writes everything in the pipe to dst, waiting for writability as needed.
func (sp *splicer) out() error {
	sp.err = nil
	sp.writing = true
	if err := sp.dst.Write(sp.poll); err != nil {
		return err
	}
	return sp.err
}

// drain is called by the poller when dst may be writable; false means wait.
func (sp *splicer) drain(fd uintptr) bool {
	for sp.p.data > 0 {
		k, err := unix.Splice(sp.p.r, nil, int(fd), nil, sp.p.data, spliceFlags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false // socket buffer full
		case err != nil:
			sp.err = os.NewSyscallError("splice", err)
			return true
		}
		sp.p.data -= int(k)
	}
	return true
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
