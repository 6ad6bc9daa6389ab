package admin

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// history keeps the last few minutes of counters in memory, one sample a
// second, for the dashboard's charts (GET /api/v1/history). Samples hold
// totals; the page computes rates from consecutive samples. It also tracks
// what the servers do not keep: the most connections each had at a sample
// and when its state last changed.
type history struct {
	mu      sync.Mutex
	samples []Sample // ring, oldest at next once full
	next    int
	servers map[string]*ServerHistory // by "upstream/server"
}

const (
	historyInterval = time.Second
	historySamples  = 600 // ten minutes
)

// Sample is one second's totals.
type Sample struct {
	T       int64                   `json:"t"`       // unix milliseconds
	Clients int64                   `json:"clients"` // client connections in any phase
	Servers map[string]ServerSample `json:"servers"` // by "upstream/server"
	// Refused counts refusals (every result but ok) per listener.
	Refused map[string]uint64 `json:"refused"`
	// Accepted counts connections relayed per listener.
	Accepted map[string]uint64 `json:"accepted"`
}

// ServerSample is one server's totals at a sample.
type ServerSample struct {
	Active   int64  `json:"active"`
	Total    uint64 `json:"total"`
	Failures uint64 `json:"failures"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

// ServerHistory is what the history knows of a server beyond its counters.
type ServerHistory struct {
	MaxActive   int64     `json:"max_active"`
	State       string    `json:"state"`
	StateSince  time.Time `json:"state_since"` // when the state was first seen (process start at the latest)
	LastChanged bool      `json:"changed"`     // the state changed while this process watched
}

func newHistory() *history {
	return &history{servers: map[string]*ServerHistory{}}
}

// run samples every historyInterval until stop is closed.
func (s *Server) runHistory(stop <-chan struct{}) {
	st, ok := s.b.(Stats)
	if !ok {
		return
	}
	t := time.NewTicker(historyInterval)
	defer t.Stop()
	for {
		s.hist.add(s.sample(st, time.Now()))
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (s *Server) sample(st Stats, now time.Time) Sample {
	sm := Sample{T: now.UnixMilli(), Clients: st.ClientConnections(), Servers: map[string]ServerSample{},
		Refused: map[string]uint64{}, Accepted: map[string]uint64{}}
	live := st.ServerBytes()
	states := map[string]serverState{}
	for _, u := range s.b.Upstreams().All() {
		for _, sv := range u.Servers {
			key := u.Name + "/" + sv.Name()
			b := live[[2]string{u.Name, sv.Name()}]
			in, out := sv.ClosedBytes()
			sm.Servers[key] = ServerSample{Active: sv.Active(), Total: sv.Total(), Failures: sv.Failures(),
				BytesIn: in + b[0], BytesOut: out + b[1]}
			states[key] = serverState{sv.State().String(), sv.StateChanged()}
		}
		for _, sv := range u.Removed() { // its connections still open
			key := u.Name + "/" + sv.Name()
			if _, ok := sm.Servers[key]; ok {
				continue // the name is taken again: the charts show the server in service
			}
			b := live[[2]string{u.Name, sv.Name()}]
			in, out := sv.ClosedBytes()
			sm.Servers[key] = ServerSample{Active: sv.Active(), Total: sv.Total(), Failures: sv.Failures(),
				BytesIn: in + b[0], BytesOut: out + b[1]}
			states[key] = serverState{state: "removed"} // since it is first seen removed
		}
	}
	st.Results(func(l, r string, n uint64) {
		if r == "ok" {
			sm.Accepted[l] += n
		} else {
			sm.Refused[l] += n
		}
	})
	s.hist.track(sm, states, now)
	return sm
}

// serverState is a server's state at a sample and when it last changed
// (zero: not since the server was created).
type serverState struct {
	state   string
	changed time.Time
}

func (h *history) track(sm Sample, states map[string]serverState, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for key := range h.servers {
		if _, ok := states[key]; !ok {
			delete(h.servers, key) // removed
		}
	}
	for key, st := range states {
		sh := h.servers[key]
		if sh == nil {
			sh = &ServerHistory{State: st.state, StateSince: now}
			if !st.changed.IsZero() {
				sh.StateSince, sh.LastChanged = st.changed, true
			}
			h.servers[key] = sh
		}
		switch {
		case !st.changed.IsZero() && !st.changed.Equal(sh.StateSince):
			// The server says when: a change and its undoing between two
			// samples count too.
			sh.State, sh.StateSince, sh.LastChanged = st.state, st.changed, true
		case sh.State != st.state:
			sh.State, sh.StateSince, sh.LastChanged = st.state, now, true
		}
		sh.MaxActive = max(sh.MaxActive, sm.Servers[key].Active)
	}
}

func (h *history) add(sm Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) < historySamples {
		h.samples = append(h.samples, sm)
		return
	}
	h.samples[h.next] = sm
	h.next = (h.next + 1) % historySamples
}

// since returns the samples after t (unix ms), oldest first, and the servers.
func (h *history) since(t int64) ([]Sample, map[string]ServerHistory) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []Sample{}
	for i := range h.samples {
		sm := h.samples[(h.next+i)%len(h.samples)]
		if sm.T > t {
			out = append(out, sm)
		}
	}
	servers := make(map[string]ServerHistory, len(h.servers))
	for k, v := range h.servers {
		servers[k] = *v
	}
	return out, servers
}

// getHistory is GET /api/v1/history[?since=UNIX_MS].
func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: want unix milliseconds")
			return
		}
		since = n
	}
	samples, servers := s.hist.since(since)
	writeJSON(w, http.StatusOK, map[string]any{"interval_ms": historyInterval.Milliseconds(),
		"samples": samples, "servers": servers})
}
