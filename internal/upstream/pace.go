package upstream

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrBusy is returned (wrapped) by Connect when max_connect_rate kept every
// server from taking the client before its deadline, or the queue was full:
// the client is refused with "server busy".
var ErrBusy = errors.New("servers busy: max_connect_rate")

// paceMargin is the part of max_connect_rate the pacer spends, so that
// delays between the pacer and the broker do not push a second at the
// broker over the rate.
const paceMargin = 0.97

// pacer spaces a server's new connections evenly. Waiters take turns in
// order of arrival (a ticket: the next slot of the schedule), and a turn is
// granted only once the interval has passed since the last grant in real
// time: a waiter woken late does not make the next one go early, so no
// one-second window ever holds more grants than the rate.
type pacer struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time // the next free slot of the schedule
	last     time.Time // the last grant
}

func newPacer(perSecond float64) *pacer {
	return &pacer{interval: time.Duration(float64(time.Second) / (perSecond * paceMargin))}
}

// wait blocks until the caller's turn, or returns ErrBusy at once when the
// turn would come after ctx's deadline (or later when ctx ends first).
func (p *pacer) wait(ctx context.Context) error {
	dl, hasDL := ctx.Deadline()
	p.mu.Lock()
	now := time.Now()
	slot := p.next
	if slot.Before(now) {
		slot = now
	}
	if hasDL && slot.After(dl) {
		p.mu.Unlock()
		return ErrBusy
	}
	p.next = slot.Add(p.interval)
	p.mu.Unlock()
	for {
		if d := time.Until(slot); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ErrBusy
			case <-t.C:
			}
		}
		p.mu.Lock()
		now := time.Now()
		if now.Sub(p.last) >= p.interval {
			p.last = now
			p.mu.Unlock()
			return nil
		}
		slot = p.last.Add(p.interval)
		p.mu.Unlock()
		if hasDL && slot.After(dl) {
			return ErrBusy
		}
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

// pace waits until s may take one more new connection under
// max_connect_rate. Waiting clients form the upstream's connect queue
// (bounded by max_connect_queue); a client whose turn would come after
// its deadline does not wait at all. ErrBusy means "try another server".
func (u *Upstream) pace(ctx context.Context, s *Server) error {
	p := s.pace.Load()
	if p == nil {
		return nil
	}
	if u.queued.Load() >= int64(u.cfg.MaxConnectQueue) {
		return ErrBusy
	}
	u.queued.Add(1)
	defer u.queued.Add(-1)
	return p.wait(ctx)
}

// ConnectQueue returns how many clients wait for their turn under
// max_connect_rate (mqlb_connect_queue_length).
func (u *Upstream) ConnectQueue() int64 { return u.queued.Load() }
