//go:build linux

package relay

import (
	"errors"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// loop relays many TCP pairs from one goroutine, like an HAProxy thread:
// its own edge-triggered epoll set holds both sockets of every pair it owns,
// and when events arrive it splices inline — no goroutine per connection or
// per direction, and nothing at all while a connection is idle. The loop
// waits in Go's own poller on its epoll descriptor (epoll sets can be
// polled), so no OS thread sits blocked in epoll_wait.
type loop struct {
	epfd   int
	evfd   int // eventfd: wakes the loop for commands
	rc     syscall.RawConn
	events []unix.EpollEvent

	mu    sync.Mutex // guards slots, gens, free and cmds
	slots []member
	gens  []uint32 // per slot, bumped on every reuse
	free  []uint32
	cmds  []*pair // pairs to close (Relay.Close, fin timeout)
	kicks []*pair // pairs to run once: edges they were not told (startHandover)

	pipes    []*pipe              // empty pipes, owned by the loop goroutine
	bufs     []*[copyBufSize]byte // free buffers for bytes held back
	runnable []*pair              // pairs that stopped early for fairness and must go on
	buf      [copyBufSize]byte    // small reads are copied through it
}

// copyBufSize is the loop's copy buffer: reads smaller than this are copied
// (two system calls, like HAProxy's recv/send), a read that fills it
// switches the direction to splice. It fits an empty pipe (64 KiB) whole.
const copyBufSize = 16 << 10

var (
	loopsOnce sync.Once
	loops     []*loop
	nextLoop  atomic.Uint32
)

// pickLoop returns a loop for a new pair (round robin), or nil when loops
// cannot be made (the goroutine relay is used then).
func pickLoop() *loop {
	loopsOnce.Do(func() {
		n := max(1, runtime.GOMAXPROCS(0))
		for range n {
			l, err := newLoop()
			if err != nil {
				slog.Warn("relay: no event loop; falling back to goroutines", "error", err)
				loops = nil
				return
			}
			loops = append(loops, l)
			go l.run()
		}
	})
	if len(loops) == 0 {
		return nil
	}
	return loops[nextLoop.Add(1)%uint32(len(loops))]
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: -1, Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	// A non-blocking epoll descriptor in an *os.File is registered with Go's
	// poller: waiting for it to be readable parks the goroutine, not a thread.
	if err := unix.SetNonblock(epfd, true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "relay-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &loop{epfd: epfd, evfd: evfd, rc: rc, events: make([]unix.EpollEvent, 256)}, nil
}

// member is what a loop's slot holds: a TCP pair it serves, or a TLS pair
// whose sockets it watches for goroutines to serve (tlspair_linux.go).
type member interface {
	// event is told, on the loop goroutine, that side's socket is ready.
	event(side int, ev uint32)
}

// entry is a member's place in its loop: the slot and generation its epoll
// events carry.
type entry struct{ slot, gen uint32 }

// add gives m a slot (recorded in e before any event can arrive) and
// registers its two sockets, fds, for events.
func (l *loop) add(m member, e *entry, fds [2]int, events uint32) error {
	l.place(m, e)
	for side := range 2 {
		if err := l.register(fds[side], e, side, events); err != nil {
			return err
		}
	}
	return nil
}

// pairEvents are the events a pair's sockets are registered for.
const pairEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// addOne gives m a slot, recorded in e, and registers fd for pair events
// as that side of the slot (a ServerConn: its pair takes the slot over).
func (l *loop) addOne(m member, e *entry, fd int, side int) error {
	l.place(m, e)
	return l.register(fd, e, side, pairEvents)
}

// register adds fd to the epoll set as side of e's slot.
func (l *loop) register(fd int, e *entry, side int, events uint32) error {
	ev := unix.EpollEvent{Events: events}
	ev.Fd, ev.Pad = token(e.slot, e.gen, side)
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// place gives m a slot, recorded in e before any event can arrive.
func (l *loop) place(m member, e *entry) {
	l.mu.Lock()
	if n := len(l.free); n > 0 {
		e.slot = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		e.slot = uint32(len(l.slots))
		l.slots = append(l.slots, nil)
		l.gens = append(l.gens, 0)
	}
	l.gens[e.slot] = (l.gens[e.slot] + 1) & (1<<30 - 1)
	e.gen = l.gens[e.slot]
	l.slots[e.slot] = m
	l.mu.Unlock()
}

// token packs slot, generation and side into epoll's 64-bit user data; a
// generation that no longer matches is an event for a pair since closed.
func token(slot, gen uint32, side int) (int32, int32) {
	return int32(slot), int32(gen<<1 | uint32(side))
}

// release frees a member's slot, after its sockets are closed: events
// still on their way find no member.
func (l *loop) release(e *entry) {
	l.mu.Lock()
	l.slots[e.slot] = nil
	l.free = append(l.free, e.slot)
	l.mu.Unlock()
}

// command asks the loop to close p.
func (l *loop) command(p *pair) { l.enqueue(&l.cmds, p) }

// kick asks the loop to run p's directions once.
func (l *loop) kick(p *pair) { l.enqueue(&l.kicks, p) }

// enqueue adds p to one of the loop's lists (guarded by mu) and wakes it.
func (l *loop) enqueue(list *[]*pair, p *pair) {
	l.mu.Lock()
	*list = append(*list, p)
	l.mu.Unlock()
	var one = [8]byte{1}
	unix.Write(l.evfd, one[:])
}

// run waits for events and serves them, forever.
func (l *loop) run() {
	wait := func(uintptr) bool {
		n, err := pollNow(l.epfd, l.events)
		if err != nil && !errors.Is(err, unix.EINTR) {
			slog.Error("relay: epoll_wait", "error", err)
		}
		l.serve(l.events[:max(n, 0)])
		// Keep going while there is more: a full batch, or pairs that
		// stopped early; otherwise park in Go's poller until the next edge.
		return false
	}
	for {
		if err := l.rc.Read(wait); err != nil {
			slog.Error("relay: event loop stopped", "error", err)
			return
		}
	}
}

// serve handles one batch of events, then commands and unfinished pairs.
func (l *loop) serve(evs []unix.EpollEvent) {
	for {
		for len(evs) > 0 || len(l.runnable) > 0 {
			l.dispatch(evs)
			l.runCommands()
			run := l.runnable
			l.runnable = nil
			for _, p := range run {
				p.more = false
				p.pumpBoth()
			}
			if len(evs) < len(l.events) && len(l.runnable) == 0 {
				return
			}
			n, _ := pollNow(l.epfd, l.events)
			evs = l.events[:max(n, 0)]
		}
		l.runCommands()
		if len(l.runnable) == 0 {
			return
		}
	}
}

// dispatch resolves the batch's tokens and pumps the directions they wake.
func (l *loop) dispatch(evs []unix.EpollEvent) {
	for _, ev := range evs {
		if ev.Fd == -1 {
			var buf [8]byte
			unix.Read(l.evfd, buf[:]) // commands run after the batch
			continue
		}
		slot, gen, side := uint32(ev.Fd), uint32(ev.Pad)>>1, int(ev.Pad&1)
		l.mu.Lock()
		var m member
		if int(slot) < len(l.slots) && l.gens[slot] == gen {
			m = l.slots[slot]
		}
		l.mu.Unlock()
		if m != nil {
			m.event(side, ev.Events)
		}
	}
}

func (l *loop) runCommands() {
	l.mu.Lock()
	cmds, kicks := l.cmds, l.kicks
	l.cmds, l.kicks = nil, nil
	l.mu.Unlock()
	for _, p := range cmds {
		p.closeNow(p.cmdErr())
	}
	for _, p := range kicks {
		p.pumpBoth() // nothing once closed
	}
}

// getPipe and putPipe keep empty pipes per loop, with no locking.
func (l *loop) getPipe() (*pipe, error) {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p, nil
	}
	return newPipe()
}

// getBuf and putBuf keep buffers for bytes a full destination did not take.
func (l *loop) getBuf() *[copyBufSize]byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return new([copyBufSize]byte)
}

func (l *loop) putBuf(b *[copyBufSize]byte) {
	if len(l.bufs) < 64 {
		l.bufs = append(l.bufs, b)
	}
}

func (l *loop) putPipe(p *pipe) {
	if p.data != 0 || len(l.pipes) >= 64 {
		p.close()
		return
	}
	l.pipes = append(l.pipes, p)
}
