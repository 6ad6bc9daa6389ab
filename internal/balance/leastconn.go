package balance

import "sync/atomic"

func init() { Register("least_conn", newLeastConn) }

// leastConn picks the usable server with the fewest active connections
// relative to its weight (Active/Weight). Each pick starts its scan one
// position further on, so ties spread over the tied servers instead of
// always going to the first one.
type leastConn struct {
	*pool
	next atomic.Uint64
}

var _ Policy = (*leastConn)(nil)

func newLeastConn(servers []Server, _ Options) (Policy, error) {
	p, err := newPool(servers)
	if err != nil {
		return nil, err
	}
	return &leastConn{pool: p}, nil
}

// Pick implements Policy.
func (lc *leastConn) Pick(_ *Conn, skip func(Server) bool) Server {
	if i := lc.leastLoaded(lc.next.Add(1)-1, skip); i >= 0 {
		return lc.servers[i]
	}
	return nil
}
