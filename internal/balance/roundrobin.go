package balance

import "sync"

func init() { Register("round_robin", newRoundRobin) }

// roundRobin is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer): every pick adds each candidate's weight to
// its current weight, takes the candidate with the highest current weight
// and subtracts the candidates' total weight from it. Weights 5,1,1 give
// a a b a c a a: the heavy server's turns are spread out, not bunched.
// Unavailable and skipped servers are not candidates for that pick.
type roundRobin struct {
	*pool
	mu      sync.Mutex
	current []int64 // guarded by mu
}

var _ Policy = (*roundRobin)(nil)

func newRoundRobin(servers []Server, opts Options) (Policy, error) {
	p, err := newPool(servers)
	if err != nil {
		return nil, err
	}
	rr := &roundRobin{pool: p, current: make([]int64, len(p.servers))}
	if prev, ok := opts.Prev.(*roundRobin); ok {
		rr.carryOver(prev)
	}
	return rr, nil
}

// carryOver copies the previous policy's current weights by server name, so
// a reload does not restart the sequence.
func (rr *roundRobin) carryOver(prev *roundRobin) {
	prev.mu.Lock()
	defer prev.mu.Unlock()
	for i, name := range prev.names {
		if j, ok := rr.index[name]; ok {
			rr.current[j] = prev.current[i]
		}
	}
}

// Pick implements Policy.
func (rr *roundRobin) Pick(_ *Conn, skip func(Server) bool) Server {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	best, total := -1, int64(0)
	for i, s := range rr.servers {
		if !usable(s, skip) {
			continue
		}
		rr.current[i] += rr.weights[i]
		total += rr.weights[i]
		if best < 0 || rr.current[i] > rr.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	rr.current[best] -= total
	return rr.servers[best]
}
