//go:build linux

package relay

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// The raw system calls answer as x/sys/unix's do: bytes, EAGAIN on an empty
// non-blocking socket, 0 at EOF, EBADF on a closed descriptor; splice moves
// bytes through a pipe; pollNow reports a readable socket and nothing else.
func TestRawSyscalls(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := fds[0], fds[1]
	defer unix.Close(a)
	buf := make([]byte, 16)
	if k, err := rawRead(b, buf); !errors.Is(err, unix.EAGAIN) || k != -1 {
		t.Fatalf("read of an empty socket: %d, %v; want -1, EAGAIN", k, err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, b, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(b)}); err != nil {
		t.Fatal(err)
	}
	evs := make([]unix.EpollEvent, 4)
	if n, err := pollNow(epfd, evs); n != 0 || err != nil {
		t.Fatalf("pollNow with nothing ready: %d, %v", n, err)
	}
	if k, err := rawWrite(a, []byte("hello")); k != 5 || err != nil {
		t.Fatalf("write: %d, %v", k, err)
	}
	if n, err := pollNow(epfd, evs); n != 1 || err != nil || evs[0].Fd != int32(b) || evs[0].Events&unix.EPOLLIN == 0 {
		t.Fatalf("pollNow with a readable socket: %d, %v, %+v", n, err, evs[0])
	}
	if k, err := rawRead(b, buf); k != 5 || err != nil || string(buf[:k]) != "hello" {
		t.Fatalf("read: %d, %v, %q", k, err, buf[:max(k, 0)])
	}
	// Through a pipe, as the loop splices.
	pp, err := newPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pp.close()
	rawWrite(a, []byte("spliced"))
	if k, err := spliceRetry(b, pp.w, 64); k != 7 || err != nil {
		t.Fatalf("splice socket→pipe: %d, %v", k, err)
	}
	if k, err := spliceRetry(pp.r, a, 7); k != 7 || err != nil {
		t.Fatalf("splice pipe→socket: %d, %v", k, err)
	}
	if k, err := readRetry(b, buf); k != 7 || err != nil || string(buf[:k]) != "spliced" {
		t.Fatalf("read after the splices: %d, %v, %q", k, err, buf[:max(k, 0)])
	}
	if k, err := rawRead(b, nil); k != 0 || err != nil {
		t.Fatalf("read of 0 bytes: %d, %v", k, err)
	}
	unix.Close(b)
	if k, err := rawRead(a, buf); k != 0 || err != nil {
		t.Fatalf("read at EOF: %d, %v; want 0, nil", k, err)
	}
	if _, err := rawWrite(b, buf); !errors.Is(err, unix.EBADF) {
		t.Fatalf("write to a closed descriptor: %v; want EBADF", err)
	}
}
