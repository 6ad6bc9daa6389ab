package admin

import (
	"net/http"

	"github.com/mqlb/mqlb/internal/config"
)

// Stats is the part of the backend the dashboard's listener view and
// history read. Backends without it serve neither.
type Stats interface {
	Listeners() []ListenerInfo
	Limits() config.Limits
	// Results calls f for every (listener, result, count): connections
	// relayed ("ok") and refused (every other result is a reason).
	Results(f func(listener, result string, n uint64))
	// ServerBytes is the bytes of open connections by (upstream, server).
	ServerBytes() map[[2]string][2]int64
	ClientConnections() int64
}

// ListenerInfo is one listener in GET /api/v1/listeners.
type ListenerInfo struct {
	Name          string            `json:"name"`
	Address       string            `json:"address"`
	Upstream      string            `json:"upstream"`
	TLS           bool              `json:"tls"`
	WebSocket     string            `json:"websocket,omitempty"`
	ProxyProtocol bool              `json:"proxy_protocol"`
	Accepted      uint64            `json:"accepted"` // relayed ("ok")
	Refused       map[string]uint64 `json:"refused"`  // by reason
}

// LimitsJSON are the limits every listener shares.
type LimitsJSON struct {
	MaxConnections    int     `json:"max_connections"`
	ConnectRatePerIP  float64 `json:"connect_rate_per_ip"`
	ConnectBurstPerIP int     `json:"connect_burst_per_ip"`
	ConnectTimeoutMS  int64   `json:"connect_timeout_ms"`
	MaxConnectPacket  int     `json:"max_connect_packet"`
	MaxPerIP          int     `json:"max_connections_per_ip"` // 0: no limit
	MaxPending        int     `json:"max_pending"`            // connections in their handshake; 0: no limit
	ShutdownGraceMS   int64   `json:"shutdown_grace_ms"`
	ClientConnections int64   `json:"client_connections"` // open now, in any phase
}

func (s *Server) stats(w http.ResponseWriter) Stats {
	st, ok := s.b.(Stats)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this backend keeps no statistics")
	}
	return st
}

// listListeners is GET /api/v1/listeners: listeners with their refusal
// counters by reason, and the limits.
func (s *Server) listListeners(w http.ResponseWriter, _ *http.Request) {
	st := s.stats(w)
	if st == nil {
		return
	}
	ls := st.Listeners()
	byName := map[string]*ListenerInfo{}
	for i := range ls {
		ls[i].Refused = map[string]uint64{}
		byName[ls[i].Name] = &ls[i]
	}
	st.Results(func(l, r string, n uint64) {
		li := byName[l]
		if li == nil {
			return // a listener closed by a reload
		}
		if r == "ok" {
			li.Accepted = n
		} else {
			li.Refused[r] = n
		}
	})
	lim := st.Limits()
	writeJSON(w, http.StatusOK, map[string]any{"listeners": ls, "limits": LimitsJSON{
		MaxConnections: lim.MaxConnections, ConnectRatePerIP: lim.ConnectRatePerIP, ConnectBurstPerIP: lim.ConnectBurst,
		ConnectTimeoutMS: lim.ConnectTimeout.D().Milliseconds(), MaxConnectPacket: lim.MaxConnectPacket,
		MaxPerIP: lim.MaxPerIP, MaxPending: lim.MaxPending, ShutdownGraceMS: lim.ShutdownGrace.D().Milliseconds(),
		ClientConnections: st.ClientConnections()}})
}
