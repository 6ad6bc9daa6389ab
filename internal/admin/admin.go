// Package admin serves the load balancer's admin HTTP API: /healthz,
// /metrics (Prometheus), the JSON API under /api/v1 (upstreams and server
// state changes, live connections, sticky tables), POST /-/reload, the
// dashboard under /ui/ and Go's profiler under /debug/pprof/. Access rules
// (loopback unless configured, Host and Origin checks, the bearer token for
// everything but /healthz and the dashboard's static files) are
// internal/adminhttp's, shared with the node's admin server.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqlb/mqlb/internal/adminhttp"
	"github.com/mqlb/mqlb/internal/proxy"
	"github.com/mqlb/mqlb/internal/upstream"
)

// Backend is what the API reads and acts on; the load balancer implements it.
type Backend interface {
	Upstreams() *upstream.Set
	Connections() *proxy.Table
	ReloadWarnings() ([]string, error) // reload the config file; what it warned about
	Serving() bool                     // false while shutting down
}

// Server is the admin HTTP server.
type Server struct {
	b     Backend
	guard *adminhttp.Guard
	reg   *prometheus.Registry
	srv   *http.Server
	ln    net.Listener
	log   *slog.Logger

	kicked atomic.Uint64 // connections closed by DELETE /api/v1/connections
	hist   *history
	stop   chan struct{} // ends the history sampler
	once   sync.Once
	nodes  []Node
}

// New builds the admin server for b with access rules o, exporting reg's metrics.
func New(b Backend, o adminhttp.Options, reg *prometheus.Registry, log *slog.Logger) *Server {
	o.Realm = "mqlb"
	s := &Server{b: b, guard: adminhttp.New(o), reg: reg, log: log, hist: newHistory(), stop: make(chan struct{})}
	s.srv = &http.Server{Handler: s.guard.Site(s.routes()),
		// A request (headers and body) must arrive within readTimeout and an
		// idle keep-alive connection is closed after idleTimeout, so neither
		// a slow body nor an idle client holds a connection (as the node's
		// admin). The profiler's profile and trace extend the write
		// deadline by the seconds they were asked for (net/http/pprof).
		ReadHeaderTimeout: readTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout, WriteTimeout: writeTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return s
}

// The admin server's timeouts (variables for tests).
var (
	readTimeout  = 10 * time.Second
	idleTimeout  = 60 * time.Second
	writeTimeout = 30 * time.Second
)

// Listen binds address. A non-loopback address without a token is refused
// unless the options say Insecure (then it is logged as a warning).
func (s *Server) Listen(address string) error {
	ln, err := s.guard.Listen(address)
	if err != nil {
		return err
	}
	s.ln = ln
	if !adminhttp.IsLoopback(ln.Addr()) {
		s.log.Warn("admin API bound beyond loopback", "address", ln.Addr().String())
	}
	return nil
}

// SetToken replaces the bearer token at once (see adminhttp.Guard.SetToken).
func (s *Server) SetToken(token string) error { return s.guard.SetToken(token, s.addr()) }

// CheckToken reports whether SetToken would take token.
func (s *Server) CheckToken(token string) error { return s.guard.CheckToken(token, s.addr()) }

func (s *Server) addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	go s.runHistory(s.stop)
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	return s.srv.Shutdown(ctx)
}

// Handler returns the routes behind the access rules (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.auth(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})))
	mux.Handle("GET /api/v1/upstreams", s.auth(http.HandlerFunc(s.listUpstreams)))
	for _, action := range []string{"drain", "enable", "disable"} { // each its own route: POST .../weight is a 405 (PUT)
		mux.Handle("POST /api/v1/upstreams/{u}/servers/{s}/"+action, s.auth(http.HandlerFunc(s.serverAction)))
	}
	s.rebalanceRoutes(mux)
	mux.Handle("GET /api/v1/connections", s.auth(http.HandlerFunc(s.listConnections)))
	mux.Handle("GET /api/v1/sticky/{u}", s.auth(http.HandlerFunc(s.stickyTable)))
	s.runtimeRoutes(mux)
	mux.Handle("GET /api/v1/listeners", s.auth(http.HandlerFunc(s.listListeners)))
	mux.Handle("GET /api/v1/history", s.auth(http.HandlerFunc(s.getHistory)))
	mux.Handle("GET /api/v1/cluster", s.auth(http.HandlerFunc(s.cluster)))
	mux.Handle("GET /api/v1/clients", s.auth(http.HandlerFunc(s.clients)))
	mux.Handle("DELETE /api/v1/clients/{id}", s.auth(http.HandlerFunc(s.kickClient)))
	mux.Handle("POST /-/reload", s.auth(http.HandlerFunc(s.reload)))
	mux.Handle("GET /ui/", uiHandler())
	mux.Handle("/debug/pprof/", s.auth(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/profile", s.auth(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/trace", s.auth(http.HandlerFunc(pprof.Trace)))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	return adminhttp.Routes(mux)
}

// auth requires the bearer token when one is set (see adminhttp.Guard.Token).
func (s *Server) auth(h http.Handler) http.Handler { return s.guard.Token(h) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.b.Serving() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	s.log.Info("POST /-/reload: reloading", "remote", r.RemoteAddr)
	warnings, err := s.b.ReloadWarnings()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Status   string   `json:"status"`
		Warnings []string `json:"warnings,omitempty"` // as in the log: an expired certificate…
	}{"reloaded", warnings})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
