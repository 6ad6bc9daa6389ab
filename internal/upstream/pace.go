package upstream

import (
	"context"
	"errors"
	"time"

	"golang.org/x/time/rate"
)

// ErrBusy is returned (wrapped) by Connect when max_connect_rate kept every
// server from taking the client before its deadline, or the queue was full:
// the client is refused with "server busy".
var ErrBusy = errors.New("servers busy: max_connect_rate")

// setPace installs (or removes) the server's connection-rate limiter for
// perSecond new connections, keeping the running one when the rate did
// not change so a reload does not refill it. The burst is one: new
// connections are spaced evenly, a little (paceMargin) more than 1/rate
// apart, so that no one-second window at the server holds more than rate
// of them even when the network delays some more than others.
func (s *Server) setPace(perSecond float64) {
	if perSecond <= 0 {
		s.pace.Store(nil)
		return
	}
	lim := rate.Limit(perSecond * paceMargin)
	if l := s.pace.Load(); l != nil && l.Limit() == lim {
		return
	}
	s.pace.Store(rate.NewLimiter(lim, 1))
}

// paceMargin is the part of max_connect_rate the limiter spends.
const paceMargin = 0.97

// pace waits until s may take one more new connection under
// max_connect_rate. Waiting clients form the upstream's connect queue
// (bounded by max_connect_queue); a client whose turn would come after
// its deadline does not wait at all. ErrBusy means "try another server".
func (u *Upstream) pace(ctx context.Context, s *Server) error {
	lim := s.pace.Load()
	if lim == nil {
		return nil
	}
	if u.queued.Load() >= int64(u.cfg.MaxConnectQueue) {
		return ErrBusy
	}
	r := lim.Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Now().Add(d).After(dl) {
		r.Cancel()
		return ErrBusy
	}
	u.queued.Add(1)
	defer u.queued.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ErrBusy
	}
}

// ConnectQueue returns how many clients wait for their turn under
// max_connect_rate (mqlb_connect_queue_length).
func (u *Upstream) ConnectQueue() int64 { return u.queued.Load() }
