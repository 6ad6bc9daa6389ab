//go:build linux

package relay

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ParkAfter is how long a direction may move nothing before its goroutine is
// given up and it waits in the park poller instead. A direction idle for
// between ParkAfter and twice that is parked. Set it before the first relay.
var ParkAfter = 2 * time.Second

// poller waits, with one goroutine for the whole process, on the sockets of
// parked directions; a readable one gets a goroutine again. Registrations are
// level-triggered and one-shot, so bytes that arrive while a direction is
// parking are never missed.
type poller struct {
	once    sync.Once
	epfd    int
	err     error
	mu      sync.Mutex
	waiting map[uint64]*direction
	next    uint64
}

var parker poller

func (pl *poller) init() {
	pl.epfd, pl.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if pl.err != nil {
		slog.Warn("relay: no epoll for idle connections; they keep their goroutines", "error", pl.err)
		return
	}
	pl.waiting = map[uint64]*direction{}
	go pl.loop()
	go pairs.sweep()
}

// park registers d's source; the caller holds d.p.mu.
func (pl *poller) park(d *direction) error {
	if pl.once.Do(pl.init); pl.err != nil {
		return pl.err
	}
	pl.mu.Lock()
	pl.next++
	d.token = pl.next
	pl.waiting[d.token] = d
	pl.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(d.token), Pad: int32(d.token >> 32)}
	op := unix.EPOLL_CTL_MOD
	if !d.inEpoll {
		op = unix.EPOLL_CTL_ADD
	}
	if err := pl.ctl(d, op, &ev); err != nil {
		pl.cancel(d)
		return err
	}
	d.inEpoll = true
	return nil
}

// ctl runs epoll_ctl on d's source socket inside RawConn.Control, which holds
// a reference on the descriptor: its number cannot be closed and reused by
// another connection meanwhile, and a closed socket is not touched at all
// (closing it already took it out of the epoll set).
func (pl *poller) ctl(d *direction, op int, ev *unix.EpollEvent) error {
	var err error
	if cerr := d.sp.src.Control(func(fd uintptr) { err = unix.EpollCtl(pl.epfd, op, int(fd), ev) }); cerr != nil {
		return cerr
	}
	return err
}

// cancel takes d back if it is still waiting (true); false means the poller
// already handed it a goroutine. The caller holds d.p.mu.
func (pl *poller) cancel(d *direction) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.waiting[d.token] != d {
		return false
	}
	delete(pl.waiting, d.token)
	return true
}

// forget removes d's socket from the epoll set; call it before the socket
// closes, with d.p.mu held.
func (pl *poller) forget(d *direction) {
	if d.inEpoll {
		_ = pl.ctl(d, unix.EPOLL_CTL_DEL, nil)
		d.inEpoll = false
	}
}

// loop hands readable parked directions back to goroutines.
func (pl *poller) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(pl.epfd, events, -1)
		if err != nil {
			if !isEINTR(err) {
				slog.Error("relay: epoll_wait failed", "error", err)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		pl.mu.Lock()
		for _, ev := range events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if d := pl.waiting[tok]; d != nil {
				delete(pl.waiting, tok)
				d.mode.Store(modeRun)
				go d.resume()
			}
		}
		pl.mu.Unlock()
	}
}

// pairSet is every live pair, for the sweeper.
type pairSet struct {
	shards [16]struct {
		sync.Mutex
		m map[*pair]struct{}
	}
}

var pairs pairSet

var pairIDs atomic.Uint64

func (s *pairSet) shard(p *pair) *struct {
	sync.Mutex
	m map[*pair]struct{}
} {
	return &s.shards[p.id%uint64(len(s.shards))]
}

func (s *pairSet) add(p *pair) {
	parker.once.Do(parker.init)
	p.id = pairIDs.Add(1)
	sh := s.shard(p)
	sh.Lock()
	if sh.m == nil {
		sh.m = map[*pair]struct{}{}
	}
	sh.m[p] = struct{}{}
	sh.Unlock()
}

func (s *pairSet) remove(p *pair) {
	sh := s.shard(p)
	sh.Lock()
	delete(sh.m, p)
	sh.Unlock()
}

// each calls f for every live pair (tests).
func (s *pairSet) each(f func(*pair)) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.Lock()
		for p := range sh.m {
			f(p)
		}
		sh.Unlock()
	}
}

// sweep kicks directions that moved nothing for a whole period.
func (s *pairSet) sweep() {
	for range time.Tick(ParkAfter) {
		var orphans []*pair
		s.each(func(p *pair) {
			p.dirs[0].kick()
			p.dirs[1].kick()
			if p.dirs[0].closedUnderfoot() || p.dirs[1].closedUnderfoot() {
				orphans = append(orphans, p)
			}
		})
		for _, p := range orphans {
			p.close()
		}
	}
}
