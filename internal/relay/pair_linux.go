//go:build linux

package relay

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Direction modes.
const (
	modeRun    int32 = iota // a goroutine owns the direction
	modeParked              // waiting in the park poller, no goroutine
	modeEnded
)

// pair is one relayed TCP connection pair on the splice path.
type pair struct {
	client, server *net.TCPConn
	opt            Options
	done           func(Result)
	dirs           [2]*direction // 0: client→server, 1: server→client
	id             uint64        // for the sweeper's set

	mu       sync.Mutex
	closed   bool // Close called or ended: no more parking
	ends     [2]end
	nEnded   int
	fin      *time.Timer
	reported bool
}

// direction moves one way: src → dst.
type direction struct {
	p        *pair
	idx      int
	src, dst *net.TCPConn
	sp       splicer
	n        *atomic.Int64
	mode     atomic.Int32
	moves    atomic.Uint64 // chunks moved, read by the sweeper
	seen     uint64        // the sweeper's last view of moves (sweeper only)
	token    uint64        // park poller registration (under p.mu)
	inEpoll  bool          // registered in the poller's epoll set (under p.mu)
}

// startSplice starts a pair, or returns nil when the sockets cannot be used
// raw (then the goroutine relay is used).
func startSplice(client, server *net.TCPConn, st *Stats, opt Options, done func(Result)) *Relay {
	crc, err1 := client.SyscallConn()
	src, err2 := server.SyscallConn()
	if err1 != nil || err2 != nil {
		return nil
	}
	p := &pair{client: client, server: server, opt: opt, done: done}
	p.dirs = [2]*direction{
		newDirection(p, 0, client, server, crc, src, &st.In),
		newDirection(p, 1, server, client, src, crc, &st.Out),
	}
	pairs.add(p)
	// Start parked: most MQTT connections are quiet after the CONNACK, and
	// bytes already waiting wake a direction at once (level-triggered).
	for _, d := range p.dirs {
		if !p.park(d) {
			go d.resume()
		}
	}
	return &Relay{stop: p.close}
}

func newDirection(p *pair, idx int, src, dst *net.TCPConn, srcRC, dstRC syscall.RawConn, n *atomic.Int64) *direction {
	d := &direction{p: p, idx: idx, src: src, dst: dst, n: n}
	d.sp.src, d.sp.dst = srcRC, dstRC
	d.sp.bind()
	return d
}

// clientToServer and serverToClient name the goroutines in stack dumps.
func (d *direction) clientToServer() { d.run() }
func (d *direction) serverToClient() { d.run() }

// run moves data until the direction ends or parks.
func (d *direction) run() {
	for {
		p, err := d.sp.in()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Kicked by the sweeper: idle for a while. Park without a goroutine.
			_ = d.src.SetReadDeadline(time.Time{})
			if d.p.park(d) {
				return
			}
			continue
		}
		if err != nil || p == nil {
			d.p.finish(d, err) // p == nil && err == nil: EOF
			return
		}
		moved := p.data
		err = d.sp.out()
		d.n.Add(int64(moved - p.data))
		d.moves.Add(1)
		putPipe(p)
		d.sp.p = nil
		if err != nil {
			d.p.finish(d, err)
			return
		}
	}
}

// resume runs a direction the poller woke; it was parked.
func (d *direction) resume() {
	if d.idx == 0 {
		d.clientToServer()
	} else {
		d.serverToClient()
	}
}

// park hands d to the poller. It reports false when the pair is closing or
// the poller refused; the caller then finishes or keeps running.
func (p *pair) park(d *direction) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	d.mode.Store(modeParked)
	if err := parker.park(d); err != nil {
		d.mode.Store(modeRun)
		return false
	}
	return true
}

// finish records how d ended. A clean EOF half-closes the other side and
// arms the fin timeout; an error closes the pair.
func (p *pair) finish(d *direction, err error) {
	p.mu.Lock()
	p.endLocked(d, err)
	if err == nil && !p.closed && p.nEnded == 1 {
		closeWrite(d.dst)
		if p.opt.FinTimeout > 0 {
			p.fin = time.AfterFunc(p.opt.FinTimeout, p.finTimeout)
		}
	}
	last := p.nEnded == 2
	p.mu.Unlock()
	if err != nil || last {
		p.close()
	}
}

func (p *pair) endLocked(d *direction, err error) {
	if d.mode.Load() == modeEnded {
		return
	}
	d.mode.Store(modeEnded)
	p.ends[d.idx] = end{err: err, at: time.Now()}
	p.nEnded++
}

// finTimeout ends a pair whose other direction outstayed FinTimeout.
func (p *pair) finTimeout() {
	p.mu.Lock()
	for _, d := range p.dirs {
		if d.mode.Load() == modeParked && parker.cancel(d) {
			p.endLocked(d, errFinTimeout)
		}
	}
	p.mu.Unlock()
	p.close()
}

// close ends the pair: parked directions are taken back from the poller and
// ended, both sockets are closed (which ends running directions), and once
// both directions have ended, done is called.
func (p *pair) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, d := range p.dirs {
			if d.mode.Load() == modeParked && parker.cancel(d) {
				p.endLocked(d, net.ErrClosed)
			}
			parker.forget(d) // out of the epoll set before its fd can be reused
		}
		p.client.Close()
		p.server.Close()
	}
	report := p.nEnded == 2 && !p.reported
	p.reported = p.reported || report
	if report && p.fin != nil {
		p.fin.Stop()
	}
	p.mu.Unlock()
	if report {
		pairs.remove(p)
		p.done(firstResult(p.ends[0], p.ends[1]))
	}
}

// kick makes a running direction that has moved nothing since the last
// sweep give up its goroutine: its wait returns a deadline error and it parks.
func (d *direction) kick() {
	if d.mode.Load() != modeRun {
		return
	}
	if m := d.moves.Load(); m != d.seen {
		d.seen = m
		return
	}
	_ = d.src.SetReadDeadline(aLongTimeAgo)
}

var aLongTimeAgo = time.Unix(1, 0)

// closedUnderfoot reports a parked direction whose socket was closed without
// Relay.Close: the kernel dropped its epoll registration, so no event will
// ever wake it; the sweeper ends its pair instead.
func (d *direction) closedUnderfoot() bool {
	return d.mode.Load() == modeParked && d.sp.src.Control(func(uintptr) {}) != nil
}

// errno helper for the poller.
func isEINTR(err error) bool { return errors.Is(err, syscall.EINTR) }
