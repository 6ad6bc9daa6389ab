// Package listener owns the load balancer's front-end sockets: the accept
// loop (with backoff on errors such as running out of descriptors) and each
// new connection's preparation — the inbound PROXY header from trusted peers
// and the TLS handshake — under a deadline. Settings (TLS certificates,
// upstream, trusted CIDRs) can be swapped on reload without closing the socket.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/config"
)

// Settings is what a reload may change on a listener.
type Settings struct {
	Name     string
	Upstream string
	TLS      *tls.Config    // nil: plain TCP
	Trusted  []netip.Prefix // non-nil: accept PROXY headers from these peers (and require them)
	// ProxyTimeout bounds reading the PROXY header.
	ProxyTimeout time.Duration
	// WSPath, when set, makes clients speak MQTT over WebSocket on that path.
	WSPath string
}

// Listener is one bound front-end address.
type Listener struct {
	ln       *net.TCPListener
	address  string // as configured
	settings atomic.Pointer[Settings]
	log      *slog.Logger
}

// Listen binds address.
func Listen(address string, s *Settings, log *slog.Logger) (*Listener, error) {
	ln, err := listenConfig.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, err
	}
	l := &Listener{ln: ln.(*net.TCPListener), address: address, log: log.With("listener", s.Name)}
	l.settings.Store(s)
	return l, nil
}

// Settings returns the current settings.
func (l *Listener) Settings() *Settings { return l.settings.Load() }

// Update swaps the settings; connections already accepted keep theirs.
func (l *Listener) Update(s *Settings) { l.settings.Store(s) }

// Address returns the configured address.
func (l *Listener) Address() string { return l.address }

// Addr returns the bound address (useful with port 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting. Connections already accepted are not affected.
func (l *Listener) Close() error { return l.ln.Close() }

// Serve accepts until Close, calling handle in a new goroutine per
// connection. Temporary errors (EMFILE, ENFILE, ECONNABORTED...) are logged
// once per burst and retried with backoff up to a second.
func (l *Listener) Serve(handle func(*Listener, *net.TCPConn)) error {
	var backoff time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
				l.log.Warn("accept failed; retrying with backoff", "error", err)
			} else {
				backoff = min(2*backoff, time.Second)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go handle(l, c)
	}
}

// NewSettings builds Settings from a listener's config.
func NewSettings(c config.Listener) (*Settings, error) {
	s := &Settings{Name: c.Name, Upstream: c.Upstream}
	if c.TLS != nil {
		cfg, err := c.TLS.ServerConfig()
		if err != nil {
			return nil, err
		}
		s.TLS = cfg
	}
	if c.WebSocket != nil {
		s.WSPath = c.WebSocket.Path
	}
	if pp := c.ProxyProtocol; pp != nil && pp.Accept {
		trusted, err := config.ParsePrefixes(pp.Trusted)
		if err != nil {
			return nil, err
		}
		s.Trusted, s.ProxyTimeout = trusted, pp.Timeout.D()
	}
	return s, nil
}
