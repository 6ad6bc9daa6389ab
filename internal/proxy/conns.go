package proxy

import (
	"sort"
	"sync"
	"sync/atomic"
)

const tableShards = 32

// Table is the set of relayed connections, sharded so adding and removing
// do not contend.
type Table struct {
	next   atomic.Uint64
	shards [tableShards]struct {
		sync.Mutex
		m map[uint64]*Conn
	}
}

// newID numbers a connection; it is set before the relay starts, since the
// relay may end (and remove it) before add runs.
func (t *Table) newID() uint64 { return t.next.Add(1) }

func (t *Table) add(c *Conn) {
	sh := &t.shards[c.ID%tableShards]
	sh.Lock()
	if sh.m == nil {
		sh.m = map[uint64]*Conn{}
	}
	sh.m[c.ID] = c
	sh.Unlock()
}

func (t *Table) remove(c *Conn) {
	sh := &t.shards[c.ID%tableShards]
	sh.Lock()
	delete(sh.m, c.ID)
	sh.Unlock()
}

// Each calls f for every live connection; f must not block.
func (t *Table) Each(f func(*Conn)) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.Lock()
		for _, c := range sh.m {
			f(c)
		}
		sh.Unlock()
	}
}

// List returns the live connections whose client id is clientID, oldest
// first. An empty clientID matches the clients that sent an empty client
// id (legal in MQTT), not every connection: All lists those.
func (t *Table) List(clientID string) []*Conn {
	return t.list(func(c *Conn) bool { return c.lease.Key.ClientID == clientID })
}

// All returns every live connection, oldest first.
func (t *Table) All() []*Conn { return t.list(func(*Conn) bool { return true }) }

func (t *Table) list(match func(*Conn) bool) []*Conn {
	var out []*Conn
	t.Each(func(c *Conn) {
		if match(c) {
			out = append(out, c)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len returns how many connections are live.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.Lock()
		n += len(sh.m)
		sh.Unlock()
	}
	return n
}

// CloseAll closes every live connection and returns how many.
func (t *Table) CloseAll() int {
	var all []*Conn
	t.Each(func(c *Conn) { all = append(all, c) })
	for _, c := range all {
		c.Close()
	}
	return len(all)
}
