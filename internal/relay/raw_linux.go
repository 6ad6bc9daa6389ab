//go:build linux

package relay

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's system calls on its non-blocking descriptors return at once,
// so they are made raw: without telling the Go scheduler the thread is in a
// system call (entersyscall/exitsyscall), which a blocking call needs so
// its P can be handed to another thread. Telling it costs more than
// bookkeeping when the process is idle between packets: the scheduler's
// monitor (sysmon) sleeps then, and entering a system call wakes it (a
// futex), after which it polls every 20 µs (nanosleep) for a while — at a
// low message rate, once per packet.

var zero uintptr

func bufPtr(b []byte) unsafe.Pointer {
	if len(b) > 0 {
		return unsafe.Pointer(&b[0])
	}
	return unsafe.Pointer(&zero)
}

func rawRead(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(bufPtr(b)), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(bufPtr(b)), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func rawSplice(in, out, n int, flags int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), uintptr(flags))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// pollNow is epoll_wait with a zero timeout (epoll_pwait with no signal
// mask: every architecture has it).
func pollNow(epfd int, events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
