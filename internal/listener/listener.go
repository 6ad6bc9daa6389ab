// Package listener is the front door of both products, the load balancer
// and the broker node: the accept loop (with a backoff on errors such as
// running out of descriptors, which Close interrupts), the connections
// still in their preamble (which ClosePending closes), and each new
// connection's preparation — the inbound PROXY header from trusted peers
// (our fuzzed proxyhdr), the TLS handshake and the WebSocket upgrade (one
// path, wsconn) — under one deadline. A Gate counts connections from accept
// for per-address and handshake limits.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mqlb/mqlb/internal/config"
)

// Settings is how a listener prepares its connections. In the load
// balancer it lives in the proxy's runtime, so a reload may change it
// without touching the socket.
type Settings struct {
	Name     string
	Upstream string         // the load balancer's upstream for this listener
	TLS      *tls.Config    // nil: plain TCP
	Trusted  []netip.Prefix // non-nil: accept PROXY headers from these peers (and require them)
	// ProxyTimeout bounds reading the PROXY header.
	ProxyTimeout time.Duration
	// WSPath, when set, makes clients speak MQTT over WebSocket on that path.
	WSPath string
	// OwnWrites: the caller takes the socket's writes over after Prepare
	// (Client.SetOut). The WebSocket layer is then given the stream without
	// writev, which would reach the socket around the Out.
	OwnWrites bool
}

// Listener is one bound front-end address.
type Listener struct {
	ln      *net.TCPListener
	address string // as configured
	log     *slog.Logger
	accept  func() (*net.TCPConn, error) // ln.AcceptTCP; tests make it fail

	mu      sync.Mutex
	closed  bool
	done    chan struct{}         // closed by Close: ends a backoff at once
	pending map[net.Conn]struct{} // accepted, preamble not done (see Settled)
	raw     *os.File              // ServeLoop's duplicate of the socket, closed by Close
}

// Listen binds address; name is for the log.
func Listen(address, name string, log *slog.Logger) (*Listener, error) {
	ln, err := listenConfig.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, err
	}
	l := &Listener{ln: ln.(*net.TCPListener), address: address, log: log.With("listener", name),
		done: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	l.accept = l.ln.AcceptTCP
	return l, nil
}

// Address returns the configured address.
func (l *Listener) Address() string { return l.address }

// Addr returns the bound address (useful with port 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting and ends a backoff in progress. Connections already
// accepted are not affected (see ClosePending). Calling it again does nothing.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	raw := l.raw
	l.mu.Unlock()
	if raw != nil {
		raw.Close() // ends ServeLoop's wait
	}
	return l.ln.Close()
}

// ClosePending closes the connections still in their preamble (accepted,
// not yet Settled) and returns how many.
func (l *Listener) ClosePending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.pending {
		c.Close()
	}
	return len(l.pending)
}

// Pending returns how many connections are in their preamble.
func (l *Listener) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// Settled marks c as past its preamble: ClosePending leaves it alone. It
// is implied when the handler returns.
func (l *Listener) Settled(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

// track records c as pending, or reports false once the listener is closed.
func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

// Backoff bounds for retried accept errors.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// Serve accepts until Close, calling handle in a new goroutine per
// connection. Accept errors (EMFILE, ENFILE, ECONNABORTED...) are logged
// once per burst and retried with a backoff up to a second, which Close
// interrupts.
func (l *Listener) Serve(handle func(*net.TCPConn)) error {
	accept := func() (net.Conn, error) {
		c, err := l.accept()
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return l.serve(accept, func(c net.Conn) { handle(c.(*net.TCPConn)) })
}

// serve is Serve with the accept made by accept.
func (l *Listener) serve(accept func() (net.Conn, error), handle func(net.Conn)) error {
	l.log.Info("listening", "address", l.Addr().String()) // the bound port, when configured with 0
	var backoff time.Duration
	for {
		c, err := accept()
		if err != nil {
			if l.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err // closed underneath, not by Close
			}
			if backoff == 0 {
				l.log.Warn("accept failed; retrying with backoff", "error", err)
			}
			backoff = nextBackoff(backoff)
			if !l.wait(backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		if !l.track(c) {
			c.Close()
			return nil
		}
		go l.run(handle, c)
	}
}

func (l *Listener) run(handle func(net.Conn), c net.Conn) {
	defer l.Settled(c)
	handle(c)
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// wait sleeps for d unless the listener closes first; it reports whether to go on.
func (l *Listener) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d < minAcceptBackoff {
		return minAcceptBackoff
	}
	return min(2*d, maxAcceptBackoff)
}

// NewSettings builds Settings from a load balancer listener's config.
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
