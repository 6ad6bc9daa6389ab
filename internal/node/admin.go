package node

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startAdmin serves the node's admin HTTP endpoints:
//
//	GET /healthz   200 "ok" when listeners, mesh and store are up, else 503 and why
//	GET /metrics   Prometheus text, prefix mqlb_node_
//	/api/v1/…      clients, kick, subscriptions, cluster (adminapi.go)
//
// With admin.token set every request needs "Authorization: Bearer <token>".
func (n *Node) startAdmin() error {
	addr := n.cfg.Admin.Address
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin.address: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", n.serveHealth)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	n.adminRoutes(mux) // adminapi.go
	n.admin = &http.Server{
		Handler:           n.requireToken(mux),
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

func (n *Node) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := n.healthy(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (n *Node) requireToken(next http.Handler) http.Handler {
	token := n.cfg.Admin.Token
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mqlb node"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
