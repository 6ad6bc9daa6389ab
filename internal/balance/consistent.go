package balance

import (
	"fmt"
	"math"
	"net/netip"
)

func init() {
	Register("source_ip", func(s []Server, o Options) (Policy, error) { return newConsistent(s, o, sourceKey) })
	Register("client_id", func(s []Server, o Options) (Policy, error) { return newConsistent(s, o, clientIDKey) })
	Register("username", func(s []Server, o Options) (Policy, error) { return newConsistent(s, o, usernameKey) })
}

// consistent is rendezvous (highest random weight) hashing with bounded
// load, after Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with
// Bounded Loads" (2018). The key's owner is its highest-ranked server (see
// hash.go); removing a server moves only the keys it owned and adding one
// moves to it only the keys it now owns, about weight/total of them.
//
// With a load factor c, a server takes a new connection only while
// Active < ceil(c * (totalActive+1) * weight / totalWeight) + weight, totals
// over available servers: the key goes to its highest-ranked usable server under
// that bound. If skips leave none under it, the highest-ranked usable server
// is taken anyway: a connection placed is better than one refused.
type consistent struct {
	*pool
	key    func(*Conn) uint64 // fnv1a64 of the key bytes
	seeds  []uint64           // serverSeed per server
	fw     []float64          // weights as floats, nil when all are equal
	factor float64            // c, 0 = no bound
}

var _ Policy = (*consistent)(nil)

func newConsistent(servers []Server, opts Options, key func(*Conn) uint64) (Policy, error) {
	if f := opts.LoadFactor; f != 0 && !(f >= 1 && !math.IsInf(f, 1)) {
		return nil, fmt.Errorf("load factor %v: want 0 (no bound) or at least 1", f)
	}
	p, err := newPool(servers)
	if err != nil {
		return nil, err
	}
	h := &consistent{pool: p, key: key, seeds: make([]uint64, len(p.servers)), factor: opts.LoadFactor}
	equal := true
	for i := range p.servers {
		h.seeds[i] = serverSeed(p.names[i])
		equal = equal && p.weights[i] == p.weights[0]
	}
	if !equal {
		h.fw = make([]float64, len(p.servers))
		for i := range h.fw {
			h.fw[i] = float64(p.weights[i])
		}
	}
	return h, nil
}

// sourceKey hashes the client IP.
func sourceKey(c *Conn) uint64 {
	if c == nil {
		return fnv1aAddr(netip.Addr{})
	}
	return fnv1aAddr(c.Source)
}

// clientIDKey hashes the client id, or the client IP when it is empty.
func clientIDKey(c *Conn) uint64 {
	if c == nil || c.ClientID == "" {
		return sourceKey(c)
	}
	return fnv1aString(c.ClientID)
}

// usernameKey hashes the username, or the client IP when it is empty.
func usernameKey(c *Conn) uint64 {
	if c == nil || c.Username == "" {
		return sourceKey(c)
	}
	return fnv1aString(c.Username)
}

// Pick implements Policy.
func (h *consistent) Pick(c *Conn, skip func(Server) bool) Server {
	key := h.key(c)
	i := -1
	if h.factor > 0 {
		if active, weight := h.load(); weight > 0 {
			i = h.best(key, skip, true, active, weight)
		}
	}
	if i < 0 {
		i = h.best(key, skip, false, 0, 0)
	}
	if i < 0 {
		return nil
	}
	return h.servers[i]
}

// best returns the position of the highest-ranked usable server for key,
// considering only servers under their load bound if bounded, or -1.
func (h *consistent) best(key uint64, skip func(Server) bool, bounded bool, active, weight int64) int {
	best := -1
	var bestRank rank
	for i, s := range h.servers {
		if !usable(s, skip) || bounded && float64(s.Active()) >= h.bound(active, weight, i) {
			continue
		}
		if r := h.rank(key, i); best < 0 || r.above(bestRank) {
			best, bestRank = i, r
		}
	}
	return best
}

// load sums active connections and weights over available servers.
func (h *consistent) load() (active, weight int64) {
	for i, s := range h.servers {
		if s.Available() {
			weight += h.weights[i]
			active += s.Active()
		}
	}
	return active, weight
}

// bound is ceil(c * (active+1) * weight(i) / totalWeight) + weight(i). The
// slack of one connection per unit of weight does nothing at scale but keeps
// a handful of connections from being pushed off their servers: without it,
// with one connection open among three servers, a reconnecting client whose
// server holds that connection would be sent elsewhere (HAProxy's
// hash-balance-factor has that behaviour), losing its session affinity.
func (h *consistent) bound(active, totalWeight int64, i int) float64 {
	return math.Ceil(h.factor*float64((active+1)*h.weights[i])/float64(totalWeight)) + float64(h.weights[i])
}

// rank places server i in key's order.
func (h *consistent) rank(key uint64, i int) rank {
	r := rank{h: keyServerHash(key, h.seeds[i]), name: h.names[i]}
	if h.fw != nil {
		r.score = weightedScore(r.h, h.fw[i])
	}
	return r
}
