package admin

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/mqlb/mqlb/internal/rebalance"
)

// Mover is implemented by a backend that rebalances and evacuates (the
// load balancer).
type Mover interface {
	Rebalance() *rebalance.Manager
}

// ChangesJSON is what an upstream shows of rebalancing and evacuations.
type ChangesJSON struct {
	Rebalance   *rebalance.State       `json:"rebalance,omitempty"`
	Evacuations []rebalance.Evacuation `json:"evacuations,omitempty"`
}

func (s *Server) rebalanceRoutes(mux *http.ServeMux) {
	mux.Handle("POST /api/v1/upstreams/{u}/servers/{s}/evacuate", s.auth(http.HandlerFunc(s.evacuate)))
	mux.Handle("GET /api/v1/upstreams/{u}/servers/{s}/evacuate", s.auth(http.HandlerFunc(s.evacuation)))
}

// changes fills an upstream's rebalancing state and evacuations.
func (s *Server) changes(uj *UpstreamJSON) {
	m, ok := s.b.(Mover)
	if !ok {
		return
	}
	st := m.Rebalance().State(uj.Name)
	uj.Rebalance = &st
	uj.Evacuations = m.Rebalance().Evacuations(uj.Name)
}

func (s *Server) mover(w http.ResponseWriter) Mover {
	m, ok := s.b.(Mover)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this backend does not evacuate")
	}
	return m
}

// DefaultEvacuateRate is the rate of an evacuation asked without ?rate=.
const DefaultEvacuateRate = 100

// evacuate is POST /api/v1/upstreams/{u}/servers/{s}/evacuate?rate=N: the
// server goes to drain and its connections are closed at N per second
// (DefaultEvacuateRate without rate).
func (s *Server) evacuate(w http.ResponseWriter, r *http.Request) {
	m := s.mover(w)
	if m == nil {
		return
	}
	rate, err := float64(DefaultEvacuateRate), error(nil)
	if v := r.URL.Query().Get("rate"); v != "" {
		rate, err = strconv.ParseFloat(v, 64)
	}
	if err != nil || !(rate > 0) || rate > 1e6 {
		writeError(w, http.StatusBadRequest, "rate: want connections per second, more than zero, such as ?rate=50")
		return
	}
	ev, err := m.Rebalance().Evacuate(r.PathValue("u"), r.PathValue("s"), rate)
	switch {
	case errors.Is(err, rebalance.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	s.log.Info("evacuation started through the admin API", "upstream", ev.Upstream, "server", ev.Server, "rate", rate, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, ev)
}

// evacuation is GET /api/v1/upstreams/{u}/servers/{s}/evacuate: progress.
func (s *Server) evacuation(w http.ResponseWriter, r *http.Request) {
	m := s.mover(w)
	if m == nil {
		return
	}
	ev, ok := m.Rebalance().EvacuationOf(r.PathValue("u"), r.PathValue("s"))
	if !ok {
		writeError(w, http.StatusNotFound, "no evacuation of "+strconv.Quote(r.PathValue("s"))+" in upstream "+strconv.Quote(r.PathValue("u")))
		return
	}
	writeJSON(w, http.StatusOK, ev)
}
