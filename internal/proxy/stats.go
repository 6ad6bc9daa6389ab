package proxy

// Results calls f for every (listener, result, count) counted so far: the
// admin API's listener view and history (connections_total's numbers).
func (p *Proxy) Results(f func(listener, result string, n uint64)) { p.metrics.Results(f) }

// ServerBytes returns the bytes relayed to (in) and from (out) each server
// by the connections still open, keyed by upstream and server; closed
// connections' bytes are on the servers (ClosedIn, ClosedOut). The admin
// history calls it once a second: about 65 ns per open connection
// (BenchmarkHistoryInputs in package lb), 6.5 ms a second at 100k.
func (p *Proxy) ServerBytes() map[[2]string][2]int64 {
	m := map[[2]string][2]int64{}
	p.conns.Each(func(c *Conn) {
		k := [2]string{c.upstreamName(), c.serverName()}
		v := m[k]
		v[0] += c.Stats.In.Load()
		v[1] += c.Stats.Out.Load()
		m[k] = v
	})
	return m
}
