package balance

import "math/rand/v2"

func init() { Register("random", newRandom) }

// random is the power of two choices: draw two distinct usable servers at
// random, each with probability proportional to its weight, and take the one
// with the lower Active/Weight (the first drawn on a tie). A single usable
// server is taken as is. Two choices avoid both the herd behaviour of
// least_conn across several balancers and the imbalance of one random draw.
type random struct {
	*pool
}

var _ Policy = (*random)(nil)

func newRandom(servers []Server, _ Options) (Policy, error) {
	p, err := newPool(servers)
	if err != nil {
		return nil, err
	}
	return &random{pool: p}, nil
}

// Pick implements Policy.
func (r *random) Pick(_ *Conn, skip func(Server) bool) Server {
	var total int64
	for i, s := range r.servers {
		if usable(s, skip) {
			total += r.weights[i]
		}
	}
	if total == 0 {
		return nil
	}
	a := r.draw(rand.Int64N(total), -1, skip)
	if a < 0 {
		return nil // every server went down between the two scans
	}
	if total == r.weights[a] {
		return r.servers[a]
	}
	b := r.draw(rand.Int64N(total-r.weights[a]), a, skip)
	if b >= 0 && lighter(r.servers[b].Active(), r.weights[b], r.servers[a].Active(), r.weights[a]) {
		return r.servers[b]
	}
	return r.servers[a]
}

// draw walks the usable servers other than except, subtracting weights from
// x, and returns the one where x falls, or the last usable one if
// availability changed since x was drawn, or -1 if there is none.
func (r *random) draw(x int64, except int, skip func(Server) bool) int {
	last := -1
	for i, s := range r.servers {
		if i == except || !usable(s, skip) {
			continue
		}
		if x < r.weights[i] {
			return i
		}
		x -= r.weights[i]
		last = i
	}
	return last
}
