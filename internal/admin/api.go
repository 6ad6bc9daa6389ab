package admin

import (
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/proxy"
	"github.com/mqlb/mqlb/internal/upstream"
)

// UpstreamJSON is one upstream in GET /api/v1/upstreams.
type UpstreamJSON struct {
	Name           string       `json:"name"`
	Balance        string       `json:"balance"`
	ProxyProtocol  string       `json:"proxy_protocol"`
	HealthCheck    string       `json:"health_check"`
	ConnectRetries int          `json:"connect_retries"`
	Servers        []ServerJSON `json:"servers"`
	// Removed are the servers removed from the upstream (runtime API or
	// reload) whose connections are still open; absent when there is none.
	Removed     []RemovedJSON `json:"removed,omitempty"`
	ChangesJSON               // rebalancing state and evacuations (rebalance.go)
}

// RemovedJSON is a removed server that still has connections.
type RemovedJSON struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Active  int64  `json:"active"`
}

// ServerJSON is one server's state.
type ServerJSON struct {
	Name     string     `json:"name"`
	Address  string     `json:"address"`
	Weight   int        `json:"weight"`
	State    string     `json:"state"`
	Healthy  bool       `json:"healthy"`
	Active   int64      `json:"active"`
	Total    uint64     `json:"total"`
	Failures uint64     `json:"connect_failures"`
	BytesIn  int64      `json:"bytes_in_closed"`
	BytesOut int64      `json:"bytes_out_closed"`
	Health   HealthJSON `json:"health"`
	// StateChanged is when State last changed; absent when it has not
	// since the server was created (HAProxy's lastchg).
	StateChanged *time.Time `json:"state_changed,omitempty"`
}

// HealthJSON is a server's last health check.
type HealthJSON struct {
	LastCheck  *time.Time `json:"last_check,omitempty"`
	DurationMS float64    `json:"last_duration_ms"`
	LastError  string     `json:"last_error,omitempty"`
	Successes  int        `json:"consecutive_successes"`
	Failures   int        `json:"consecutive_failures"`
}

func serverJSON(s *upstream.Server) ServerJSON {
	h := s.Health()
	hj := HealthJSON{DurationMS: float64(h.LastDuration.Microseconds()) / 1000, LastError: h.LastError,
		Successes: h.Successes, Failures: h.Failures}
	if !h.LastCheck.IsZero() {
		hj.LastCheck = &h.LastCheck
	}
	in, out := s.ClosedBytes()
	sj := ServerJSON{Name: s.Name(), Address: s.Address(), Weight: s.Weight(), State: s.State().String(),
		Healthy: s.Healthy(), Active: s.Active(), Total: s.Total(), Failures: s.Failures(),
		BytesIn: in, BytesOut: out, Health: hj}
	if c := s.StateChanged(); !c.IsZero() {
		sj.StateChanged = &c
	}
	return sj
}

func (s *Server) listUpstreams(w http.ResponseWriter, _ *http.Request) {
	out := []UpstreamJSON{}
	for _, u := range s.b.Upstreams().All() {
		out = append(out, s.upstreamJSON(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"upstreams": out})
}

func (s *Server) upstreamJSON(u *upstream.Upstream) UpstreamJSON {
	c := u.Config()
	uj := UpstreamJSON{Name: u.Name, Balance: c.Balance, ProxyProtocol: c.ProxyProtocol,
		HealthCheck: c.HealthCheck.Type, ConnectRetries: c.ConnectRetries, Servers: []ServerJSON{}}
	for _, sv := range u.Servers {
		uj.Servers = append(uj.Servers, serverJSON(sv))
	}
	for _, sv := range u.Removed() {
		uj.Removed = append(uj.Removed, RemovedJSON{Name: sv.Name(), Address: sv.Address(), Active: sv.Active()})
	}
	s.changes(&uj)
	return uj
}

// serverAction is POST /api/v1/upstreams/{u}/servers/{s}/{drain,enable,disable}.
func (s *Server) serverAction(w http.ResponseWriter, r *http.Request) {
	u := s.pathUpstream(w, r)
	if u == nil {
		return
	}
	sv := u.Server(r.PathValue("s"))
	if sv == nil {
		writeError(w, http.StatusNotFound, "no server "+strconv.Quote(r.PathValue("s"))+" in upstream "+u.Name)
		return
	}
	from := sv.State().String()
	switch action := path.Base(r.URL.Path); action {
	case "drain":
		sv.Drain()
	case "enable":
		sv.Enable()
	case "disable":
		sv.Disable()
	default:
		writeError(w, http.StatusNotFound, "unknown action "+strconv.Quote(action)+"; want drain, enable or disable")
		return
	}
	// The one line of the change (the server's own is at debug).
	s.log.Info("server state changed through the admin API", "upstream", u.Name, "server", sv.Name(),
		"from", from, "to", sv.State().String(), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, serverJSON(sv))
}

// ConnJSON is one live connection.
type ConnJSON struct {
	ID         uint64    `json:"id"`
	Listener   string    `json:"listener"`
	Remote     string    `json:"remote"`
	ClientID   string    `json:"client_id"`
	Username   string    `json:"username,omitempty"`
	Identity   string    `json:"identity,omitempty"`
	Protocol   byte      `json:"protocol"`
	Upstream   string    `json:"upstream"`
	Server     string    `json:"server"`
	ServerAddr string    `json:"server_addr"`
	Since      time.Time `json:"since"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
}

// listConnections is GET /api/v1/connections[?client_id=X|q=SUBSTRING][&limit=N].
func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) {
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: want a positive whole number")
			return
		}
		limit = n
	}
	var all []*proxy.Conn
	if r.URL.Query().Has("client_id") { // client_id= is the empty client id, not every client
		all = s.b.Connections().List(r.URL.Query().Get("client_id"))
	} else {
		all = s.b.Connections().All()
	}
	if q := r.URL.Query().Get("q"); q != "" { // prefix or substring of the client id
		all = slices.DeleteFunc(all, func(c *proxy.Conn) bool { return !strings.Contains(c.ClientID(), q) })
	}
	out := make([]ConnJSON, 0, min(len(all), limit))
	for _, c := range all[:min(len(all), limit)] {
		r := c.Record()
		out = append(out, ConnJSON{ID: c.ID, Listener: r.Listener, Remote: r.Remote, ClientID: r.ClientID,
			Username: r.Username, Identity: r.Identity, Protocol: r.Version, Upstream: r.Upstream, Server: r.Server,
			ServerAddr: r.ServerAddr, Since: r.Start, BytesIn: r.BytesIn, BytesOut: r.BytesOut})
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": len(all), "connections": out})
}

// stickyTable is GET /api/v1/sticky/{u}.
func (s *Server) stickyTable(w http.ResponseWriter, r *http.Request) {
	u, t := stickyPolicy[balance.StickyTable](s, w, r)
	if u == nil {
		return
	}
	entries := t.Entries()
	if entries == nil {
		entries = []balance.StickyEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"upstream": u.Name, "size": t.Len(), "entries": entries})
}

// pathUpstream is the upstream named by {u}; it answers 404 and returns nil
// when there is none.
func (s *Server) pathUpstream(w http.ResponseWriter, r *http.Request) *upstream.Upstream {
	u := s.b.Upstreams().Get(r.PathValue("u"))
	if u == nil {
		writeError(w, http.StatusNotFound, "no upstream "+strconv.Quote(r.PathValue("u")))
	}
	return u
}

// stickyPolicy is the upstream named by {u} and its policy as P (a sticky
// interface); it answers 404 or 409 and returns a nil upstream when there is
// no such upstream or it does not balance with sticky.
func stickyPolicy[P any](s *Server, w http.ResponseWriter, r *http.Request) (*upstream.Upstream, P) {
	u := s.pathUpstream(w, r)
	if u == nil {
		return nil, *new(P)
	}
	p, ok := u.Policy.(P)
	if !ok {
		writeError(w, http.StatusConflict, "upstream "+u.Name+" balances with "+u.Config().Balance+", not sticky")
		return nil, p
	}
	return u, p
}
