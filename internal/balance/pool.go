package balance

import (
	"errors"
	"fmt"
)

// MaxWeight is the largest server weight.
const MaxWeight = 256

// pool is the fixed, validated server list a policy is built over, with the
// weights read once (they do not change for a policy's life).
type pool struct {
	servers []Server
	names   []string
	weights []int64
	index   map[string]int // name → position
}

// newPool copies and validates servers: non-nil, unique non-empty names,
// weights 1..MaxWeight. An empty list is valid; Pick then returns nil.
func newPool(servers []Server) (*pool, error) {
	p := &pool{
		servers: make([]Server, len(servers)),
		names:   make([]string, len(servers)),
		weights: make([]int64, len(servers)),
		index:   make(map[string]int, len(servers)),
	}
	for i, s := range servers {
		if s == nil {
			return nil, fmt.Errorf("server %d is nil", i)
		}
		name, w := s.Name(), s.Weight()
		if name == "" {
			return nil, errors.New("server with an empty name")
		}
		if _, dup := p.index[name]; dup {
			return nil, fmt.Errorf("server %q listed twice", name)
		}
		if w < 1 || w > MaxWeight {
			return nil, fmt.Errorf("server %q: weight %d out of range 1..%d", name, w, MaxWeight)
		}
		p.servers[i], p.names[i], p.weights[i], p.index[name] = s, name, int64(w), i
	}
	return p, nil
}

// usable reports whether s may take a new connection.
func usable(s Server, skip func(Server) bool) bool {
	return s.Available() && (skip == nil || !skip(s))
}

// lighter reports whether active a over weight wa is a lower load than
// active b over weight wb, without division.
func lighter(a, wa, b, wb int64) bool {
	return a*wb < b*wa
}

// leastLoaded returns the position of the usable server with the lowest
// Active/Weight, or -1. The scan starts at start (mod n) so that ties go to
// whichever tied server comes first from there: rotating start spreads ties.
func (p *pool) leastLoaded(start uint64, skip func(Server) bool) int {
	n := len(p.servers)
	if n == 0 {
		return -1
	}
	best, bestActive := -1, int64(0)
	i := int(start % uint64(n))
	for range n {
		s := p.servers[i]
		if usable(s, skip) {
			a := s.Active()
			if best < 0 || lighter(a, p.weights[i], bestActive, p.weights[best]) {
				best, bestActive = i, a
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	return best
}
