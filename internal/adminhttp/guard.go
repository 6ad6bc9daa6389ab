// Package adminhttp is the one access policy of mqlb's admin HTTP servers
// (the load balancer's and the node's): where they may listen, which Host
// headers they answer (DNS rebinding), which cross-origin requests they
// refuse (CSRF from a page in the operator's browser) and the bearer token.
package adminhttp

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// Options is the admin section's access policy.
type Options struct {
	Token        string   // bearer token; "" = none
	AllowedHosts []string // Host names answered besides IP literals and localhost; "*" = any
	Insecure     bool     // allow a non-loopback address without a token
	Realm        string   // WWW-Authenticate realm
}

// Guard applies Options to handlers.
type Guard struct {
	o     Options
	token atomic.Pointer[[]byte] // the bearer token now (SetToken); empty = none
	hosts map[string]bool
	any   bool
	csrf  *http.CrossOriginProtection
}

// New returns the guard for o.
func New(o Options) *Guard {
	g := &Guard{o: o, hosts: map[string]bool{}, csrf: http.NewCrossOriginProtection()}
	tok := []byte(o.Token)
	g.token.Store(&tok)
	for _, h := range o.AllowedHosts {
		if h == "*" {
			g.any = true
		}
		g.hosts[strings.ToLower(h)] = true
	}
	g.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused: the Origin is not this admin server's own")
	}))
	return g
}

// Listen binds address, refusing a non-loopback address without a token
// unless Insecure is set.
func (g *Guard) Listen(address string) (net.Listener, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	if err := g.CheckAddr(ln.Addr()); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// CheckAddr is the rule Listen applies to the bound address.
func (g *Guard) CheckAddr(a net.Addr) error {
	if len(*g.token.Load()) > 0 || g.o.Insecure || IsLoopback(a) {
		return nil
	}
	return fmt.Errorf("refusing to serve the admin API on %s, beyond loopback, without a token: set admin.token, or admin.insecure: true to accept the risk", a)
}

// Site wraps every route: it answers only allowed Host headers, refuses
// state-changing requests from another origin and sends SecurityHeaders.
func (g *Guard) Site(h http.Handler) http.Handler {
	h = g.csrf.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SecurityHeaders(w.Header())
		if !g.hostAllowed(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "unexpected Host header; add it to admin.allowed_hosts if this name is yours")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Routes wraps mux so that its own answers, for a path it has no route
// for (404) and for a method a path does not take (405, with the Allow
// header), are JSON errors like every other admin error, not
// net/http's text. They carry "no_route": true, which tells mqlb ctl the
// server is not the kind it expected (a node's API asked for a load
// balancer's path, or the other way round).
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{h: http.Header{}, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		msg := "no such endpoint: " + r.Method + " " + r.URL.Path
		switch rec.code {
		case http.StatusMethodNotAllowed:
			allow := rec.h.Get("Allow")
			w.Header().Set("Allow", allow)
			msg = "method " + r.Method + " not allowed on " + r.URL.Path + "; allowed: " + allow
		case http.StatusNotFound:
		default: // not the mux's own 404 or 405: answer as it did
			mux.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.code)
		json.NewEncoder(w).Encode(map[string]any{"error": msg, "no_route": true})
	})
}

// headerRecorder keeps the status and headers of a mux's 404 or 405 answer.
type headerRecorder struct {
	h    http.Header
	code int
}

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *headerRecorder) WriteHeader(code int)        { r.code = code }

// SecurityHeaders sets the headers every admin answer carries: no page of
// another site may frame it (clickjacking: a framed tokenless dashboard
// would click its buttons for the attacker), browsers do not sniff a type
// other than the one sent, and no Referer leaves it. A handler may replace
// Content-Security-Policy with a stricter one (the dashboard's, which keeps
// frame-ancestors 'none').
func SecurityHeaders(h http.Header) {
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// Token requires "Authorization: Bearer TOKEN" (scheme in any case) when a
// token is set.
// The token is read on every request, so SetToken applies at once.
func (g *Guard) Token(h http.Handler) http.Handler {
	realm := g.o.Realm
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := *g.token.Load()
		if len(want) > 0 && subtle.ConstantTimeCompare(bearer(r), want) != 1 {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", realm))
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// SetToken replaces the bearer token (a reload rotating a leaked one).
// Removing it is refused while the server listens on addr beyond loopback
// without Insecure, as Listen would refuse to start so.
func (g *Guard) SetToken(token string, addr net.Addr) error {
	if err := g.CheckToken(token, addr); err != nil {
		return err
	}
	tok := []byte(token)
	g.token.Store(&tok)
	return nil
}

// CheckToken is SetToken's rule: no removal beyond loopback.
func (g *Guard) CheckToken(token string, addr net.Addr) error {
	if token == "" && !g.o.Insecure && addr != nil && !IsLoopback(addr) {
		return fmt.Errorf("admin.token: the admin API listens on %s, beyond loopback: a reload cannot remove its token", addr)
	}
	return nil
}

// bearer returns the credentials of an Authorization header with the Bearer
// scheme, which is case-insensitive (RFC 9110 section 11.1).
func bearer(r *http.Request) []byte {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	return []byte(strings.TrimSpace(cred))
}

// hostAllowed accepts IP literals (a rebinding attack needs a DNS name),
// localhost and the configured names.
func (g *Guard) hostAllowed(hostport string) bool {
	if g.any {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" || net.ParseIP(host) != nil {
		return host != ""
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || g.hosts[host]
}

// IsLoopback reports whether a is a loopback address.
func IsLoopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
