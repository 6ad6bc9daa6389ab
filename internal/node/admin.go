package node

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqlb/mqlb/internal/adminhttp"
)

// startAdmin serves the node's admin HTTP endpoints:
//
//	GET /healthz   200 "ok" when listeners, mesh and store are up, else 503 and why
//	GET /livez     200 "ok" while the node serves, whatever its peers do (liveness probes)
//	GET /metrics   Prometheus text, prefix mqlb_node_
//	/api/v1/…      clients, kick, subscriptions, cluster (adminapi.go)
//	/debug/pprof/  Go's profiler, as on the load balancer's admin
//
// The access rules are the load balancer's (internal/adminhttp): Host and
// Origin checks on every request, and with admin.token set every request but
// /healthz needs "Authorization: Bearer <token>".
func (n *Node) startAdmin() error {
	a := n.cfg.Admin
	if a.Address == "" {
		return nil
	}
	guard := adminhttp.New(adminhttp.Options{Token: a.Token, AllowedHosts: a.AllowedHosts, Insecure: a.Insecure, Realm: "mqlb node"})
	ln, err := guard.Listen(a.Address)
	if err != nil {
		return fmt.Errorf("admin.address: %w", err)
	}
	if !adminhttp.IsLoopback(ln.Addr()) {
		n.log.Warn("admin API bound beyond loopback", "address", ln.Addr().String())
	}
	mux := http.NewServeMux() // every route here needs the token (when set)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	n.adminRoutes(mux) // adminapi.go
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", n.serveHealth) // probes cannot send a token
	root.HandleFunc("GET /livez", n.serveLive)
	root.Handle("/", guard.Token(adminhttp.Routes(mux)))
	n.admin = &http.Server{
		Handler:           guard.Site(adminhttp.Routes(root)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	n.adminAddr = ln.Addr().String()
	go func() {
		if err := n.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "error", err)
		}
	}()
	return nil
}

// AdminAddr returns the address the admin HTTP server is bound to ("" when off).
func (n *Node) AdminAddr() string { return n.adminAddr }

// serveLive answers a liveness probe: the node serves (its admin starts
// after its listeners) until it closes. Unlike /healthz it does not depend
// on the other nodes: restarting a node because its peers are gone brings
// none of them back.
func (n *Node) serveLive(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if n.closing.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "closing")
		return
	}
	fmt.Fprintln(w, "ok")
}

func (n *Node) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := n.healthy(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}
