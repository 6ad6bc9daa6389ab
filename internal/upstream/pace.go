package upstream

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// ErrBusy is returned (wrapped) by Connect when max_connect_rate kept every
// server from taking the client before its deadline, or the queue was full:
// the client is refused with "server busy".
var ErrBusy = errors.New("servers busy: max_connect_rate")

// errReleased: the server went out of service (down, drained, disabled,
// removed) while the client waited for its turn. The client picks again at
// once; the wait is not an attempt.
var errReleased = errors.New("server out of service while waiting for its turn")

// paceMargin is the part of max_connect_rate the pacer spends, so that
// delays between the pacer and the broker do not push a second at the
// broker over the rate.
const paceMargin = 0.97

// pacer spaces a server's new connections evenly. Waiters take turns in
// order of arrival, and a turn is granted only once the interval has passed
// since the last grant in real time: a waiter woken late does not make the
// next one go early, so no one-second window ever holds more grants than
// the rate. A grant whose attempt failed is given back (refund): it placed
// nothing on the server, so the next waiter need not wait for it. When the
// server goes out of service every waiter is released (release), as
// HAProxy redispatches a down server's queue.
type pacer struct {
	interval time.Duration
	mu       sync.Mutex
	last     time.Time // the last grant still charged
	prev     time.Time // the grant before it: where a refund of last goes back to
	queue    list.List // *waiter, in order of arrival; the front one's turn is next
}

type waiter struct {
	el       *list.Element
	poke     chan struct{} // (1) now at the front, the turn moved, or released
	released bool
}

func newPacer(perSecond float64) *pacer {
	return &pacer{interval: time.Duration(float64(time.Second) / (perSecond * paceMargin))}
}

// wait blocks until the caller's turn and returns when it was granted, or
// returns ErrBusy at once when the turn would come after ctx's deadline (or
// later when ctx ends first), or errReleased when the server went out of
// service meanwhile.
func (p *pacer) wait(ctx context.Context) (time.Time, error) {
	dl, hasDL := ctx.Deadline()
	p.mu.Lock()
	now := time.Now()
	at := p.last.Add(p.interval)
	if p.queue.Len() == 0 && !now.Before(at) {
		p.grant(now)
		p.mu.Unlock()
		return now, nil
	}
	// At the latest, once everyone ahead had a turn.
	at = later(at, now).Add(time.Duration(p.queue.Len()) * p.interval)
	if hasDL && at.After(dl) {
		p.mu.Unlock()
		return time.Time{}, ErrBusy
	}
	w := &waiter{poke: make(chan struct{}, 1)}
	w.el = p.queue.PushBack(w)
	p.mu.Unlock()
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		var tc <-chan time.Time
		p.mu.Lock()
		if w.released {
			p.mu.Unlock()
			return time.Time{}, errReleased
		}
		if p.queue.Front() == w.el {
			now := time.Now()
			at := p.last.Add(p.interval)
			if !now.Before(at) {
				p.leave(w)
				p.grant(now)
				p.mu.Unlock()
				return now, nil
			}
			if hasDL && at.After(dl) {
				p.leave(w)
				p.mu.Unlock()
				return time.Time{}, ErrBusy
			}
			if t == nil {
				t = time.NewTimer(at.Sub(now))
			} else {
				t.Reset(at.Sub(now))
			}
			tc = t.C
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			p.mu.Lock()
			if !w.released {
				p.leave(w)
			}
			p.mu.Unlock()
			return time.Time{}, ErrBusy
		case <-w.poke:
		case <-tc:
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (p *pacer) grant(now time.Time) { p.prev, p.last = p.last, now }

// leave takes w out of the queue; the next waiter at the front is told.
func (p *pacer) leave(w *waiter) {
	head := p.queue.Front() == w.el
	p.queue.Remove(w.el)
	if head {
		p.pokeFront()
	}
}

func (p *pacer) pokeFront() {
	if f := p.queue.Front(); f != nil {
		select {
		case f.Value.(*waiter).poke <- struct{}{}:
		default:
		}
	}
}

// refund gives back the turn granted at at, whose attempt placed nothing
// (the dial failed, the broker closed or timed out before its CONNACK): if
// no turn was granted since, the next waiter's turn comes as if it had not
// been granted.
func (p *pacer) refund(at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.Equal(at) {
		p.last = p.prev
		p.pokeFront()
	}
}

// release sends every waiter away at once (errReleased): the server went
// out of service, and they pick another.
func (p *pacer) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for e := p.queue.Front(); e != nil; e = e.Next() {
		w := e.Value.(*waiter)
		w.released = true
		select { // a poke already pending wakes it as well
		case w.poke <- struct{}{}:
		default:
		}
	}
	p.queue.Init()
}

// turn is a grant of a server's pacer, for the attempt it allowed.
type turn struct {
	p  *pacer // nil: no max_connect_rate
	at time.Time
}

// refund gives the turn back when its attempt placed nothing.
func (t turn) refund() {
	if t.p != nil {
		t.p.refund(t.at)
	}
}

// setPace installs (or removes) the server's pacer for perSecond new
// connections, keeping the running one when the rate did not change so a
// reload does not reset it.
func (s *Server) setPace(perSecond float64) {
	if perSecond <= 0 {
		s.pace.Store(nil)
		return
	}
	if p := s.pace.Load(); p != nil && p.interval == newPacer(perSecond).interval {
		return
	}
	s.pace.Store(newPacer(perSecond))
}

// releaseWaiters sends the clients waiting for s's turn to pick again: s
// takes no new connection now.
func (s *Server) releaseWaiters() {
	if p := s.pace.Load(); p != nil {
		p.release()
	}
}

// pace waits until s may take one more new connection under
// max_connect_rate. Waiting clients form the upstream's connect queue
// (bounded by max_connect_queue); a client whose turn would come later
// than floor before its deadline (too late to dial: minAttempt) does not
// wait at all. ErrBusy means "try another server"; errReleased, "s went
// out of service: pick again".
func (u *Upstream) pace(ctx context.Context, s *Server, floor time.Duration) (turn, error) {
	p := s.pace.Load()
	if p == nil {
		return turn{}, nil
	}
	if u.queued.Load() >= int64(u.cfg.MaxConnectQueue) {
		return turn{}, ErrBusy
	}
	if dl, ok := ctx.Deadline(); ok {
		ctx = Until(ctx, dl.Add(-floor))
	}
	u.queued.Add(1)
	defer u.queued.Add(-1)
	at, err := p.wait(ctx)
	return turn{p, at}, err
}

// ConnectQueue returns how many clients wait for their turn under
// max_connect_rate (mqlb_connect_queue_length).
func (u *Upstream) ConnectQueue() int64 { return u.queued.Load() }
