package rebalance

import (
	"math"
	"sort"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/upstream"
)

// plan is one look at an upstream: where its connections are, where the
// policy would have them, and which to close, in order.
type plan struct {
	active map[string]float64 // available server → connections on it
	target map[string]float64 // available server → what the policy would give it
	tol    float64
	moves  []move
	keyed  bool
}

type move struct {
	c        Conn
	from, to string // to is "" when the policy will choose (not hashing)
}

// makePlan looks at u's connections now. For the hashing policies the
// target of a server is how many live keys it owns (balance.Keyed.Home, a
// server in slow start owning only the keys it admits yet) and the moves
// are exactly the connections not on their key's server. For the other
// policies the target is the server's share of the connections by
// (slow-start) weight, and the moves are the most recent connections of
// the servers above it. Only available servers count; a connection younger
// than min_age is never moved.
func makePlan(u *upstream.Upstream, conns []Conn, now time.Time) *plan {
	cfg := u.Config().Rebalance
	p := &plan{active: map[string]float64{}, target: map[string]float64{}, tol: cfg.Tolerance}
	for _, s := range u.Servers {
		if s.Available() {
			p.active[s.Name()], p.target[s.Name()] = 0, 0
		}
	}
	var live []Conn
	for _, c := range conns {
		if _, ok := p.active[c.Server]; ok {
			p.active[c.Server]++
			live = append(live, c)
		}
	}
	oldEnough := func(c Conn) bool { return now.Sub(c.Since) >= cfg.MinAge.D() }
	if k, ok := u.Policy.(balance.Keyed); ok {
		p.keyed = true
		p.planKeyed(u, k, live, oldEnough)
	} else {
		p.planShares(u, live, oldEnough)
	}
	return p
}

func (p *plan) planKeyed(u *upstream.Upstream, k balance.Keyed, live []Conn, oldEnough func(Conn) bool) {
	bySrc := map[string][]move{}
	for _, c := range live {
		home := c.Server
		if h := k.Home(c.Key); h != nil && h.Name() != c.Server && u.Admits(h.(*upstream.Server), c.Key) {
			home = h.Name()
		}
		p.target[home]++
		if home != c.Server && oldEnough(c) {
			bySrc[c.Server] = append(bySrc[c.Server], move{c: c, from: c.Server, to: home})
		}
	}
	p.moves = interleave(bySrc)
}

func (p *plan) planShares(u *upstream.Upstream, live []Conn, oldEnough func(Conn) bool) {
	var total, weights float64
	for _, s := range u.Servers {
		if _, ok := p.active[s.Name()]; ok {
			weights += float64(s.Weight()) * u.Share(s)
			total += p.active[s.Name()]
		}
	}
	if weights == 0 {
		return
	}
	for _, s := range u.Servers {
		if _, ok := p.active[s.Name()]; ok {
			p.target[s.Name()] = total * float64(s.Weight()) * u.Share(s) / weights
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Since.After(live[j].Since) }) // most recent first
	bySrc := map[string][]move{}
	for _, c := range live {
		excess := p.active[c.Server] - p.target[c.Server]
		if oldEnough(c) && float64(len(bySrc[c.Server])) < math.Floor(excess) {
			bySrc[c.Server] = append(bySrc[c.Server], move{c: c, from: c.Server})
		}
	}
	p.moves = interleave(bySrc)
}

// interleave orders moves so that the most loaded source gives first and
// the sources then take turns.
func interleave(bySrc map[string][]move) []move {
	srcs := make([]string, 0, len(bySrc))
	for s := range bySrc {
		srcs = append(srcs, s)
	}
	sort.Slice(srcs, func(i, j int) bool {
		if len(bySrc[srcs[i]]) != len(bySrc[srcs[j]]) {
			return len(bySrc[srcs[i]]) > len(bySrc[srcs[j]])
		}
		return srcs[i] < srcs[j]
	})
	var out []move
	for i := 0; ; i++ {
		n := len(out)
		for _, s := range srcs {
			if i < len(bySrc[s]) {
				out = append(out, bySrc[s][i])
			}
		}
		if len(out) == n {
			return out
		}
	}
}

// within reports whether every server is within frac (of its target, at
// least one connection) of its target.
func (p *plan) within(frac float64) bool {
	for s, t := range p.target {
		if math.Abs(p.active[s]-t) > math.Max(frac*t, 1) {
			return false
		}
	}
	return true
}

// took accounts for a move made, as if its client had landed already: off
// its server, onto its key's server or the one furthest below target.
func (p *plan) took(m move) {
	p.active[m.from]--
	to := m.to
	if to == "" {
		best := -math.MaxFloat64
		for s, t := range p.target {
			if d := t - p.active[s]; d > best {
				to, best = s, d
			}
		}
	}
	p.active[to]++
}

// underTarget reports whether some server is below its target: there is
// somewhere for a moved client to go.
func (p *plan) underTarget() bool {
	for s, t := range p.target {
		if p.active[s] < t-0.5 {
			return true
		}
	}
	return false
}
