// Package listener owns the load balancer's front-end sockets: the accept
// loop (with backoff on errors such as running out of descriptors) and each
// new connection's preparation — the inbound PROXY header from trusted peers
// and the TLS handshake — under a deadline. Settings (TLS certificates,
// upstream, trusted CIDRs) can change on reload without closing the socket.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mqlb/mqlb/internal/config"
)

// Settings is how a listener prepares its connections; a reload may change
// it (it lives in the proxy's runtime, not in the Listener).
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

// Listener is one bound front-end address. What a connection accepted on
// it gets (TLS, PROXY header, upstream) is in the proxy's current runtime,
// found by the listener's key, so that one pointer swap changes all of it.
type Listener struct {
	ln      *net.TCPListener
	address string // as configured
	log     *slog.Logger
}

// Listen binds address; name is for the log.
func Listen(address, name string, log *slog.Logger) (*Listener, error) {
	ln, err := listenConfig.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, err
	}
	return &Listener{ln: ln.(*net.TCPListener), address: address, log: log.With("listener", name)}, nil
}

// Address returns the configured address.
func (l *Listener) Address() string { return l.address }

// Addr returns the bound address (useful with port 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting. Connections already accepted are not affected.
func (l *Listener) Close() error { return l.ln.Close() }

// Serve accepts until Close, calling handle in a new goroutine per
// connection. Temporary errors (EMFILE, ENFILE, ECONNABORTED...) are logged
// once per burst and retried with backoff up to a second.
func (l *Listener) Serve(handle func(*net.TCPConn)) error {
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
		go handle(c)
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
