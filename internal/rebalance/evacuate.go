package rebalance

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/mqlb/mqlb/internal/upstream"
)

// Evacuation is the progress of one evacuation, as the admin API shows it.
type Evacuation struct {
	Upstream  string     `json:"upstream"`
	Server    string     `json:"server"`
	Rate      float64    `json:"rate"`
	Status    string     `json:"status"` // running | done | cancelled
	Started   time.Time  `json:"started"`
	Finished  *time.Time `json:"finished,omitempty"`
	Initial   int64      `json:"initial"`   // connections when it started
	Moved     uint64     `json:"moved"`     // connections closed so far
	Remaining int64      `json:"remaining"` // connections still on the server
}

// Statuses of an evacuation.
const (
	EvacRunning   = "running"
	EvacDone      = "done"
	EvacCancelled = "cancelled" // the server left drain (enabled, disabled) or was added back enabled
)

// ErrNotFound is returned by Evacuate for an unknown upstream or server.
var ErrNotFound = errors.New("not found")

type evacuee struct {
	mu   sync.Mutex
	e    Evacuation
	pace pacer
	sv   *upstream.Server // the server evacuated; nil once finished
}

// Evacuate drains server s of upstream u and closes its connections at
// perSecond until none is left; their clients reconnect to the other
// servers. Evacuating a server that is being evacuated changes the rate.
// A server removed from the upstream (RemovedServer) whose connections are
// still open is evacuated too: it takes no new connection, so it needs no
// drain.
func (m *Manager) Evacuate(u, s string, perSecond float64) (Evacuation, error) {
	if !(perSecond > 0) {
		return Evacuation{}, fmt.Errorf("rate: want connections per second, more than zero")
	}
	up := m.upstream(u)
	var sv *upstream.Server
	if up != nil {
		sv = up.Server(s)
		if sv == nil {
			sv = up.RemovedServer(s)
		}
	}
	if sv == nil {
		return Evacuation{}, fmt.Errorf("%w: no server %q in upstream %q", ErrNotFound, s, u)
	}
	k := [2]string{u, s}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev := m.evacs[k]; ev != nil && ev.snapshot().Status == EvacRunning {
		ev.mu.Lock()
		ev.e.Rate = perSecond
		ev.mu.Unlock()
		return ev.snapshot(), nil
	}
	if m.stopped {
		return Evacuation{}, errors.New("shutting down")
	}
	removed := up.Server(s) != sv
	if !removed {
		sv.Drain()
	}
	ev := &evacuee{sv: sv, e: Evacuation{Upstream: u, Server: s, Rate: perSecond,
		Status: EvacRunning, Started: time.Now(), Initial: sv.Active(), Remaining: sv.Active()}}
	m.evacs[k] = ev
	m.log.Info("evacuating server", "upstream", u, "server", s, "rate", perSecond, "connections", sv.Active(), "removed", removed)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.evacuate(ev)
	}()
	return ev.snapshot(), nil
}

// evacuate closes the server's connections at the rate until it has none,
// or, while it is one of the upstream's servers, it leaves drain. A server
// removed from the upstream (before or during the evacuation) keeps its
// connections until they close: they are evacuated all the same.
func (m *Manager) evacuate(ev *evacuee) {
	u, s, sv := ev.e.Upstream, ev.e.Server, ev.sv
	for {
		if m.leftDrain(ev) {
			return
		}
		var mine []Conn
		for _, c := range m.conns(u) {
			if c.Of == sv {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 && sv.Active() == 0 {
			ev.finish(EvacDone, 0, time.Now())
			m.log.Info("server evacuated", "upstream", u, "server", s, "moved", ev.snapshot().Moved)
			return
		}
		sort.Slice(mine, func(i, j int) bool { return mine[i].Since.After(mine[j].Since) })
		for _, c := range mine {
			if !ev.pace.wait(m.ctx, ev.currentRate()) {
				ev.finish(EvacCancelled, -1, time.Now())
				return
			}
			if m.leftDrain(ev) { // enabled or added back while it waited
				return
			}
			c.Close(ReasonEvacuated)
			m.count(u, s)
			ev.step(sv.Active())
		}
		if len(mine) == 0 && !sleep(m.ctx, 50*time.Millisecond) { // connections being dialled or closing
			ev.finish(EvacCancelled, -1, time.Now())
			return
		}
	}
}

// leftDrain cancels the evacuation, and says so, when its server is one of
// the upstream's servers and not in drain (an operator enabled or disabled
// it, or added it back after a remove).
func (m *Manager) leftDrain(ev *evacuee) bool {
	u, s, sv := ev.e.Upstream, ev.e.Server, ev.sv
	if up := m.upstream(u); up == nil || up.Server(s) != sv || sv.State().String() == "drain" {
		return false
	}
	ev.finish(EvacCancelled, -1, time.Now())
	m.log.Info("evacuation cancelled: the server left drain", "upstream", u, "server", s)
	return true
}

func (ev *evacuee) currentRate() float64 {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.e.Rate
}

func (ev *evacuee) step(remaining int64) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.e.Moved++
	ev.e.Remaining = max(remaining-1, 0) // the one just closed is released a moment later
}

func (ev *evacuee) finish(status string, remaining int64, now time.Time) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.e.Status, ev.e.Finished = status, &now
	ev.sv = nil // a finished evacuation does not hold its server (a removed one is forgotten)
	if remaining >= 0 {
		ev.e.Remaining = remaining
	}
}

func (ev *evacuee) snapshot() Evacuation {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	e := ev.e
	if ev.e.Status == EvacRunning {
		e.Finished = nil
	}
	return e
}

// Evacuations returns the evacuations of upstream u (running and finished), by server.
func (m *Manager) Evacuations(u string) []Evacuation {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Evacuation
	for k, ev := range m.evacs {
		if k[0] == u {
			out = append(out, ev.snapshot())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out
}

// EvacuationOf returns the evacuation of server s of upstream u, if any.
func (m *Manager) EvacuationOf(u, s string) (Evacuation, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev := m.evacs[[2]string{u, s}]; ev != nil {
		return ev.snapshot(), true
	}
	return Evacuation{}, false
}

// State returns the rebalancing state of upstream u.
func (m *Manager) State(u string) State {
	up := m.upstream(u)
	if up == nil {
		return State{Status: StatusOff}
	}
	cfg := up.Config().Rebalance
	st := State{Status: StatusOff}
	m.mu.Lock()
	mv := m.movers[u]
	m.mu.Unlock()
	if mv != nil && cfg.Rate > 0 {
		st = mv.snapshot()
		if st.Status == "" {
			st.Status = StatusBalanced
		}
	}
	st.Rate, st.Tolerance, st.MinAge = cfg.Rate, cfg.Tolerance, cfg.MinAge.String()
	return st
}
