package balance

import (
	"net/netip"
	"time"
)

// stickKey identifies a client: its client id or username, or when that is
// empty its IP. A struct rather than a string so lookups do not allocate.
type stickKey struct {
	id string
	ip netip.Addr // zero when id is set
}

func (k stickKey) String() string {
	if k.id != "" {
		return k.id
	}
	return k.ip.String()
}

// stick is one table entry. While it has no active connection it sits on
// the table's idle list.
type stick struct {
	key        stickKey
	server     int // position in the owning policy's pool
	active     int
	lastUsed   time.Time // last Placed or Released
	prev, next *stick    // idle list links; nil while active > 0
}

// stickTable maps keys to servers, like HAProxy's stick-table with
// `size` and `expire`. An entry expires ttl after its last connection
// closed; entries with active connections never expire and are never
// evicted. Idle entries are kept on a list in the order they became idle,
// which is both least-recently-used order and expiry order (the TTL is one
// for the table), so eviction and sweeping take from the front.
//
// stickTable is not safe for concurrent use; the sticky policy locks it.
type stickTable struct {
	m    map[stickKey]*stick
	idle stick // sentinel of the circular idle list, oldest first
	size int
	ttl  time.Duration
}

func newStickTable(size int, ttl time.Duration) *stickTable {
	t := &stickTable{m: make(map[stickKey]*stick), size: size, ttl: ttl}
	t.idle.prev, t.idle.next = &t.idle, &t.idle
	return t
}

func (t *stickTable) expired(e *stick, now time.Time) bool {
	return e.active == 0 && !now.Before(e.lastUsed.Add(t.ttl))
}

// get returns key's entry, removing it first if it has expired.
func (t *stickTable) get(key stickKey, now time.Time) *stick {
	e := t.m[key]
	if e != nil && t.expired(e, now) {
		t.remove(e)
		return nil
	}
	return e
}

// place records a connection of key on server, evicting the least recently
// used idle entry if the table is full. It reports false when the table is
// full of entries with active connections: the connection goes unrecorded.
func (t *stickTable) place(key stickKey, server int, now time.Time) bool {
	e := t.get(key, now)
	if e == nil {
		if len(t.m) >= t.size {
			if t.idle.next == &t.idle {
				return false
			}
			t.remove(t.idle.next)
		}
		e = &stick{key: key}
		t.m[key] = e
	}
	if e.next != nil {
		t.unlink(e) // idle until now
	}
	e.server, e.lastUsed = server, now
	e.active++
	return true
}

// release records that a connection of key closed. Keys without an entry
// (placed while the table was full, or since dropped) are ignored.
func (t *stickTable) release(key stickKey, now time.Time) {
	e := t.m[key]
	if e == nil || e.active == 0 {
		return
	}
	e.active--
	e.lastUsed = now
	if e.active == 0 {
		t.pushIdle(e)
	}
}

// sweep removes up to limit expired entries and returns how many it removed.
func (t *stickTable) sweep(now time.Time, limit int) int {
	n := 0
	for n < limit && t.idle.next != &t.idle && t.expired(t.idle.next, now) {
		t.remove(t.idle.next)
		n++
	}
	return n
}

func (t *stickTable) remove(e *stick) {
	if e.next != nil {
		t.unlink(e)
	}
	delete(t.m, e.key)
}

// pushIdle appends e to the idle list as its newest entry.
func (t *stickTable) pushIdle(e *stick) {
	e.prev, e.next = t.idle.prev, &t.idle
	e.prev.next, t.idle.prev = e, e
}

func (t *stickTable) unlink(e *stick) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// insert adds a copy of e (from another table) mapped to server, keeping
// its counts and times. Idle entries must be inserted oldest first.
func (t *stickTable) insert(e *stick, server int) {
	c := &stick{key: e.key, server: server, active: e.active, lastUsed: e.lastUsed}
	t.m[c.key] = c
	if c.active == 0 {
		t.pushIdle(c)
	}
}

// entries returns a snapshot of the live entries with server names from names.
func (t *stickTable) entries(names []string, now time.Time) []StickyEntry {
	out := make([]StickyEntry, 0, len(t.m))
	for _, e := range t.m {
		if t.expired(e, now) {
			continue
		}
		se := StickyEntry{Key: e.key.String(), Server: names[e.server], Active: e.active, LastUsed: e.lastUsed}
		if e.active == 0 {
			se.Expires = e.lastUsed.Add(t.ttl)
		}
		out = append(out, se)
	}
	return out
}
