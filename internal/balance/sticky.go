package balance

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func init() { Register("sticky", newSticky) }

const (
	defaultStickySize = 100_000
	defaultStickyTTL  = 30 * time.Minute
	sweepEvery        = time.Second // how often traffic triggers a sweep
	sweepBatch        = 256         // entries removed per lock hold
)

// sticky sends a client back to the server it was last placed on, like
// HAProxy's `stick on` with a `stick-table size 100k expire 30m`. The key is
// the client id or the username (Options.StickyKey), or the client IP when
// that is empty. A key without a live entry, or whose server is unavailable
// or skipped, is placed by least_conn; the table records placements when the
// proxy reports them (Placed), so a failed dial records nothing.
//
// On reload the new policy takes the table over the first time it is used:
// it copies the entries whose server it still has and the old policy
// forwards Placed and Released to it from then on, so connections placed
// before the reload are counted down when they close. Taking over on first
// use rather than at construction leaves the old policy intact if the
// reload is abandoned after building policies.
type sticky struct {
	*pool
	now        func() time.Time
	byUsername bool
	rotate     atomic.Uint64 // least_conn tie rotation

	adopt sync.Once
	prev  *sticky // the policy to take over; used once under adopt

	mu        sync.Mutex
	table     *stickTable
	nextSweep time.Time
	successor *sticky // set when a newer policy took the table over
}

var (
	_ Policy      = (*sticky)(nil)
	_ Tracker     = (*sticky)(nil)
	_ StickyTable = (*sticky)(nil)
	_ Sweeper     = (*sticky)(nil)
)

func newSticky(servers []Server, opts Options) (Policy, error) {
	size, ttl := opts.StickySize, opts.StickyTTL
	if size == 0 {
		size = defaultStickySize
	}
	if ttl == 0 {
		ttl = defaultStickyTTL
	}
	if size < 0 || ttl < 0 {
		return nil, fmt.Errorf("sticky size %d and ttl %v: want more than zero", size, ttl)
	}
	if k := opts.StickyKey; k != "" && k != "client_id" && k != "username" {
		return nil, fmt.Errorf("sticky key %q: want client_id or username", k)
	}
	p, err := newPool(servers)
	if err != nil {
		return nil, err
	}
	s := &sticky{pool: p, now: opts.Now, byUsername: opts.StickyKey == "username", table: newStickTable(size, ttl)}
	if s.now == nil {
		s.now = time.Now
	}
	if prev, ok := opts.Prev.(*sticky); ok && prev.byUsername == s.byUsername {
		s.prev = prev // a table keyed differently is worthless here
	}
	return s, nil
}

func (p *sticky) keyOf(c *Conn) stickKey {
	switch {
	case c == nil:
		return stickKey{}
	case p.byUsername && c.Username != "":
		return stickKey{id: c.Username}
	case !p.byUsername && c.ClientID != "":
		return stickKey{id: c.ClientID}
	}
	return stickKey{ip: c.Source}
}

// Pick implements Policy.
func (p *sticky) Pick(c *Conn, skip func(Server) bool) Server {
	p.adopt.Do(p.takeOver)
	key, now := p.keyOf(c), p.now()
	stuck := -1
	p.mu.Lock()
	if e := p.table.get(key, now); e != nil {
		stuck = e.server
	}
	p.sweepIfDue(now)
	p.mu.Unlock()
	if stuck >= 0 && usable(p.servers[stuck], skip) {
		return p.servers[stuck]
	}
	if i := p.leastLoaded(p.rotate.Add(1)-1, skip); i >= 0 {
		return p.servers[i]
	}
	return nil
}

// Placed implements Tracker: c's key now maps to s, with one more active
// connection. It replaces the mapping if the key was on another server.
func (p *sticky) Placed(c *Conn, s Server) {
	p.adopt.Do(p.takeOver)
	key, now := p.keyOf(c), p.now()
	p.mu.Lock()
	if next := p.successor; next != nil {
		p.mu.Unlock()
		next.Placed(c, s)
		return
	}
	if i, ok := p.index[s.Name()]; ok {
		p.table.place(key, i, now)
	}
	p.mu.Unlock()
}

// Released implements Tracker: one connection of c's key closed. The entry's
// TTL starts when its last connection closes.
func (p *sticky) Released(c *Conn, s Server) {
	p.adopt.Do(p.takeOver)
	key, now := p.keyOf(c), p.now()
	p.mu.Lock()
	if next := p.successor; next != nil {
		p.mu.Unlock()
		next.Released(c, s)
		return
	}
	p.table.release(key, now)
	p.mu.Unlock()
}

// sweepIfDue removes one batch of expired entries every sweepEvery, or on
// every call while a backlog remains. p.mu must be held.
func (p *sticky) sweepIfDue(now time.Time) {
	if now.Before(p.nextSweep) {
		return
	}
	if p.table.sweep(now, sweepBatch) < sweepBatch {
		p.nextSweep = now.Add(sweepEvery)
	}
}

// Sweep implements Sweeper, releasing the lock between batches.
func (p *sticky) Sweep() int {
	p.adopt.Do(p.takeOver)
	total := 0
	for {
		p.mu.Lock()
		n := p.table.sweep(p.now(), sweepBatch)
		p.mu.Unlock()
		if total += n; n < sweepBatch {
			return total
		}
	}
}

// Entries implements StickyTable: live entries, most recently used first.
func (p *sticky) Entries() []StickyEntry {
	p.adopt.Do(p.takeOver)
	p.mu.Lock()
	out := p.table.entries(p.names, p.now())
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b StickyEntry) int { return b.LastUsed.Compare(a.LastUsed) })
	return out
}

// Len implements StickyTable: the number of live entries.
func (p *sticky) Len() int {
	p.Sweep()
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.table.m)
}

// takeOver copies the previous policy's table and makes it forward Placed
// and Released here. If that policy was already taken over (a reload built
// from a stale Prev), it follows the chain to the newest one.
func (p *sticky) takeOver() {
	old := p.prev
	p.prev = nil
	for old != nil {
		old.mu.Lock()
		if next := old.successor; next != nil {
			old.mu.Unlock()
			old = next
			continue
		}
		p.mu.Lock()
		p.copyFrom(old)
		p.mu.Unlock()
		old.successor = p
		old.mu.Unlock()
		return
	}
}

// copyFrom copies old's live entries whose server p still has, by name:
// active ones first (they cannot be evicted), then idle ones oldest first,
// evicting the oldest if p's table is smaller. Both locks must be held.
func (p *sticky) copyFrom(old *sticky) {
	now, from, to := p.now(), old.table, p.table
	for _, e := range from.m {
		i, ok := p.index[old.names[e.server]]
		if ok && e.active > 0 && len(to.m) < to.size {
			to.insert(e, i)
		}
	}
	for e := from.idle.next; e != &from.idle; e = e.next {
		i, ok := p.index[old.names[e.server]]
		if !ok || from.expired(e, now) {
			continue
		}
		if len(to.m) >= to.size && to.idle.next != &to.idle {
			to.remove(to.idle.next) // keep the most recent
		}
		if len(to.m) < to.size {
			to.insert(e, i)
		}
	}
}
