package proxy

import "github.com/mqlb/mqlb/internal/rebalance"

// Movable lists the relayed connections of upstream u that are not being
// closed already: what the rebalancer and evacuations may move
// (a rebalance.Source).
func (t *Table) Movable(u string) []rebalance.Conn {
	var out []rebalance.Conn
	t.Each(func(c *Conn) {
		if sv := c.lease.Server(); c.upstream != nil && c.upstream.Name == u && !c.closing.Load() && sv != nil {
			out = append(out, rebalance.Conn{Server: sv.Name(), Of: sv, Since: c.start, Key: &c.lease.Key, Close: c.CloseFor})
		}
	})
	return out
}
