package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/proxy"
)

// Runtime is the part of the backend that changes upstreams at runtime
// (POST/DELETE .../servers, PUT .../weight). Its errors wrap ErrNotFound,
// ErrConflict or ErrBadRequest, which pick the HTTP status. The context
// carries who asked (Remote), for the backend's log of the change.
type Runtime interface {
	AddServer(ctx context.Context, upstream string, s config.Server) error
	RemoveServer(ctx context.Context, upstream, server string) error
	SetWeight(ctx context.Context, upstream, server string, weight int) error
}

type remoteKey struct{}

// withRemote returns ctx carrying the address of the HTTP peer that asked.
func withRemote(ctx context.Context, remote string) context.Context {
	return context.WithValue(ctx, remoteKey{}, remote)
}

// Remote returns the address of the admin API client whose request ctx
// comes from (the HTTP peer), or "" for a change made in process.
func Remote(ctx context.Context) string {
	r, _ := ctx.Value(remoteKey{}).(string)
	return r
}

// Errors a Runtime wraps.
var (
	ErrNotFound   = errors.New("not found")
	ErrConflict   = errors.New("conflict")
	ErrBadRequest = errors.New("bad request")
)

func (s *Server) runtimeRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/upstreams/{u}", s.auth(http.HandlerFunc(s.getUpstream)))
	mux.Handle("POST /api/v1/upstreams/{u}/servers", s.auth(http.HandlerFunc(s.addServer)))
	mux.Handle("DELETE /api/v1/upstreams/{u}/servers/{s}", s.auth(http.HandlerFunc(s.removeServer)))
	mux.Handle("PUT /api/v1/upstreams/{u}/servers/{s}/weight", s.auth(http.HandlerFunc(s.setWeight)))
	mux.Handle("DELETE /api/v1/connections", s.auth(http.HandlerFunc(s.kick)))
	mux.Handle("DELETE /api/v1/sticky/{u}", s.auth(http.HandlerFunc(s.clearSticky)))
}

// getUpstream is GET /api/v1/upstreams/{u}.
func (s *Server) getUpstream(w http.ResponseWriter, r *http.Request) {
	u := s.pathUpstream(w, r)
	if u == nil {
		return
	}
	writeJSON(w, http.StatusOK, s.upstreamJSON(u))
}

func (s *Server) runtime(w http.ResponseWriter) Runtime {
	rt, ok := s.b.(Runtime)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this backend cannot change upstreams at runtime")
	}
	return rt
}

// readJSON decodes a small JSON body into v, refusing unknown fields.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body: want JSON: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "body: want one JSON object, got more after it")
		return false
	}
	return true
}

// runtimeError answers a Runtime error with the status it wraps.
func runtimeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrBadRequest):
		code = http.StatusBadRequest
	}
	msg := err.Error()
	for _, e := range []error{ErrNotFound, ErrConflict, ErrBadRequest} {
		msg = strings.TrimPrefix(msg, e.Error()+": ")
	}
	writeError(w, code, msg)
}

// addServer is POST /api/v1/upstreams/{u}/servers with {"name","address","weight"}.
func (s *Server) addServer(w http.ResponseWriter, r *http.Request) {
	rt := s.runtime(w)
	var body struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		Weight  *int   `json:"weight"` // nil: absent, the default 1; 0 is refused as PUT .../weight does
		State   string `json:"state"`
	}
	if rt == nil || !readJSON(w, r, &body) {
		return
	}
	if body.Address == "" {
		writeError(w, http.StatusBadRequest, "address: required (host:port)")
		return
	}
	weight := 1
	if body.Weight != nil {
		weight = *body.Weight
		if weight < 1 || weight > 256 {
			writeError(w, http.StatusBadRequest, "weight: want a weight from 1 to 256, got "+strconv.Itoa(weight))
			return
		}
	}
	u := r.PathValue("u")
	err := rt.AddServer(withRemote(r.Context(), r.RemoteAddr), u, config.Server{Name: body.Name, Address: body.Address, Weight: weight, State: body.State})
	if err != nil {
		runtimeError(w, err)
		return
	}
	s.writeServer(w, http.StatusCreated, u, cmp.Or(body.Name, body.Address))
}

// removeServer is DELETE /api/v1/upstreams/{u}/servers/{s}.
func (s *Server) removeServer(w http.ResponseWriter, r *http.Request) {
	rt := s.runtime(w)
	if rt == nil {
		return
	}
	if err := rt.RemoveServer(withRemote(r.Context(), r.RemoteAddr), r.PathValue("u"), r.PathValue("s")); err != nil {
		runtimeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": r.PathValue("s"), "upstream": r.PathValue("u")})
}

// setWeight is PUT /api/v1/upstreams/{u}/servers/{s}/weight with {"weight": N}.
func (s *Server) setWeight(w http.ResponseWriter, r *http.Request) {
	rt := s.runtime(w)
	var body struct {
		Weight *int `json:"weight"`
	}
	if rt == nil || !readJSON(w, r, &body) {
		return
	}
	if body.Weight == nil {
		writeError(w, http.StatusBadRequest, `body: want {"weight": N}`)
		return
	}
	if err := rt.SetWeight(withRemote(r.Context(), r.RemoteAddr), r.PathValue("u"), r.PathValue("s"), *body.Weight); err != nil {
		runtimeError(w, err)
		return
	}
	s.writeServer(w, http.StatusOK, r.PathValue("u"), r.PathValue("s"))
}

func (s *Server) writeServer(w http.ResponseWriter, code int, u, name string) {
	if up := s.b.Upstreams().Get(u); up != nil {
		if sv := up.Server(name); sv != nil {
			writeJSON(w, code, serverJSON(sv))
			return
		}
	}
	writeJSON(w, code, map[string]string{"upstream": u, "server": name})
}

// kick is DELETE /api/v1/connections?client_id=…: it closes the client's
// connections (both sides) and says how many.
func (s *Server) kick(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("client_id")
	if !r.URL.Query().Has("client_id") {
		writeError(w, http.StatusBadRequest, "client_id: required (an empty client id is client_id=)")
		return
	}
	conns := s.b.Connections().List(id)
	for _, c := range conns {
		c.CloseFor(proxy.ReasonKicked)
	}
	s.kicked.Add(uint64(len(conns)))
	if len(conns) == 0 {
		writeError(w, http.StatusNotFound, "no connection with client id "+strconv.Quote(id))
		return
	}
	s.log.Info("client kicked through the admin API", "client_id", id, "connections", len(conns), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"client_id": id, "closed": len(conns), "kicked_total": s.kicked.Load()})
}

// clearSticky is DELETE /api/v1/sticky/{u}[?key=…].
func (s *Server) clearSticky(w http.ResponseWriter, r *http.Request) {
	u, c := stickyPolicy[balance.StickyClearer](s, w, r)
	if u == nil {
		return
	}
	key := r.URL.Query().Get("key")
	n := c.Clear(key)
	if key != "" && n == 0 {
		writeError(w, http.StatusNotFound, "no sticky entry "+strconv.Quote(key)+" in upstream "+u.Name)
		return
	}
	s.log.Info("sticky entries cleared through the admin API", "upstream", u.Name, "key", key, "removed", n, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"upstream": u.Name, "removed": n})
}
