package rebalance

import (
	"math"
	"sort"
	"sync"
	"time"
)

// State is a rebalancer's state, shown in GET /api/v1/upstreams/{u}.
type State struct {
	Rate      float64        `json:"rate"`
	Tolerance float64        `json:"tolerance"`
	MinAge    string         `json:"min_age"`
	Status    string         `json:"status"` // off | balanced | moving | waiting
	Moved     uint64         `json:"moved"`
	LastMove  *time.Time     `json:"last_move,omitempty"`
	Servers   []ServerTarget `json:"servers,omitempty"`
}

// ServerTarget is one available server's load against the policy's.
type ServerTarget struct {
	Name   string  `json:"name"`
	Active int     `json:"active"`
	Target float64 `json:"target"`
}

// Statuses of a rebalancer.
const (
	StatusOff      = "off"
	StatusBalanced = "balanced" // within tolerance
	StatusMoving   = "moving"   // closing connections at rate
	StatusWaiting  = "waiting"  // out of tolerance, nothing may move yet (too young, no target up)
)

// mover rebalances one upstream: it looks at the distribution once a
// second and, when it is out of tolerance, closes the planned connections
// at rebalance.rate until every server is within half the tolerance (the
// band keeps it from stopping at the edge and starting again at the next
// reconnect), then looks again.
type mover struct {
	m      *Manager
	name   string
	pace   pacer
	mu     sync.Mutex
	state  State
	moving bool
}

func (mv *mover) run() {
	for {
		u := mv.m.upstream(mv.name)
		if u == nil || u.Config().Rebalance.Rate <= 0 {
			return
		}
		cfg := u.Config().Rebalance
		p := makePlan(u, mv.m.conns(mv.name), time.Now())
		start := !p.within(cfg.Tolerance)
		if mv.moving || start {
			mv.moving = mv.batch(p, cfg.Rate)
		} else {
			mv.report(p, StatusBalanced)
		}
		if !mv.moving && !sleep(mv.m.ctx, time.Second) {
			return
		}
	}
}

// batch makes up to one second's worth of p's moves; it reports whether
// more are needed (false once within half the tolerance, or when nothing
// may move).
func (mv *mover) batch(p *plan, rate float64) bool {
	mv.report(p, StatusMoving)
	if !p.underTarget() || len(p.moves) == 0 {
		mv.report(p, StatusWaiting)
		return false
	}
	budget := int(math.Ceil(rate))
	for i, mo := range p.moves {
		if i == budget {
			return true
		}
		if p.within(p.tol / 2) {
			mv.report(p, StatusBalanced)
			return false
		}
		if !mv.pace.wait(mv.m.ctx, rate) {
			return false
		}
		mo.c.Close(ReasonRebalanced)
		mv.m.count(mv.name, mo.from)
		p.took(mo)
		mv.moved()
	}
	return true
}

func (mv *mover) report(p *plan, status string) {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	if status == StatusMoving && p.within(p.tol) && !mv.moving {
		status = StatusBalanced
	}
	mv.state.Status = status
	mv.state.Servers = mv.state.Servers[:0]
	for s, t := range p.target {
		mv.state.Servers = append(mv.state.Servers, ServerTarget{Name: s, Active: int(p.active[s]), Target: math.Round(t*10) / 10})
	}
	sort.Slice(mv.state.Servers, func(i, j int) bool { return mv.state.Servers[i].Name < mv.state.Servers[j].Name })
}

func (mv *mover) moved() {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	now := mv.pace.last
	mv.state.Moved++
	mv.state.LastMove = &now
}

// snapshot returns the state.
func (mv *mover) snapshot() State {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	s := mv.state
	s.Servers = append([]ServerTarget(nil), s.Servers...)
	return s
}
