package meshwire

import (
	"sync"
	"time"
)

// Delays tells, per origin, whether a message took much longer to arrive
// than that origin's quickest recent ones, from the Sent time its envelope
// carries. The nodes' clocks are not assumed to agree: what is compared is
// a message's lag (arrival on this clock minus Sent on the origin's) with
// the lowest lag of the origin's messages over the last one to two
// windows, which holds the difference of the two clocks plus the quickest
// trip. A clock stepped backward lowers the lag and is followed at once; one
// stepped forward (or the origin's backward) makes every message look late:
// when none of an origin's messages has been on time for resyncAfter, the
// lowest lag starts over from the current one.
type Delays struct {
	mu      sync.Mutex
	origins map[string]*originLag
	swept   time.Time
}

type originLag struct {
	cur, prev int64     // lowest lag (ms) in the current and the previous window
	since     time.Time // start of the current window
	onTime    time.Time // last message within the bound
}

const (
	lagWindow   = 30 * time.Second
	resyncAfter = 10 * time.Second
)

// NewDelays returns an empty Delays.
func NewDelays() *Delays {
	return &Delays{origins: map[string]*originLag{}, swept: time.Now()}
}

// Late reports whether a message of origin sent at sent (unix milliseconds
// on the origin's clock) and arriving now took more than bound longer than
// the origin's quickest recent messages, and records its lag.
func (d *Delays) Late(origin string, sent int64, now time.Time, bound time.Duration) bool {
	lag := now.UnixMilli() - sent
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.swept) > sweepPeriod {
		d.sweep(now)
	}
	o := d.origins[origin]
	if o == nil {
		o = &originLag{cur: lag, prev: lag, since: now, onTime: now}
		d.origins[origin] = o
	}
	if now.Sub(o.since) >= lagWindow {
		o.prev, o.cur, o.since = o.cur, lag, now
	}
	o.cur = min(o.cur, lag)
	if lag-min(o.cur, o.prev) <= bound.Milliseconds() {
		o.onTime = now
		return false
	}
	if now.Sub(o.onTime) >= resyncAfter {
		o.cur, o.prev, o.since, o.onTime = lag, lag, now, now
		return false
	}
	return true
}

// sweep forgets origins not heard from for originIdle (d.mu held).
func (d *Delays) sweep(now time.Time) {
	d.swept = now
	for k, o := range d.origins {
		if now.Sub(o.onTime) > originIdle && now.Sub(o.since) > originIdle {
			delete(d.origins, k)
		}
	}
}
