// Package listen builds the broker node's network listeners for mochi-mqtt:
// plain TCP, TLS, WebSocket (ws) and WebSocket over TLS (wss), each optionally
// behind a PROXY protocol v1/v2 header sent by a trusted load balancer.
//
// It is a thin adapter from mochi's listener interface to the front door the
// load balancer uses too (internal/listener): the same accept loop, PROXY
// reader, TLS handshake and WebSocket upgrade. What it adds is the
// client-certificate identity — taken from a verified TLS handshake or from
// the PP2_TYPE_SSL TLV of a trusted PROXY v2 header. NewIdentityHook turns
// that identity into the MQTT username (VerneMQ's use_identity_as_username);
// CertIdentity exposes it to auth hooks.
//
// The preamble (PROXY header, TLS, WebSocket upgrade) has a deadline
// (HandshakeTimeout), the CONNECT another (ConnectTimeout), and each
// accepted connection is prepared in its own goroutine so a slow client
// never blocks the accept loop.
package listen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	frontdoor "github.com/mqlb/mqlb/internal/listener"
)

// Listener types accepted in Options.Type.
const (
	TypeTCP = "tcp"
	TypeTLS = "tls"
	TypeWS  = "ws"
	TypeWSS = "wss"
)

// Defaults applied by New when the option is zero.
const (
	DefaultPath             = "/mqtt"
	DefaultProxyTimeout     = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultConnectTimeout   = 10 * time.Second
)

// Options configures one listener.
type Options struct {
	ID               string         // listener name (mochi listener id)
	Type             string         // "tcp" | "tls" | "ws" | "wss"
	Address          string         // host:port; port 0 allowed (Address() then reports the bound one)
	TLS              *tls.Config    // required for tls/wss
	Path             string         // websocket path, default "/mqtt"
	ProxyProtocol    bool           // accept PROXY v1/v2 headers
	Trusted          []netip.Prefix // who may send them; from anyone else a header is not read, and mochi closes on it (not a CONNECT)
	ProxyTimeout     time.Duration  // read deadline for the header (default 5s)
	UsernameFromCert bool           // the client certificate CN becomes the username (VerneMQ use_identity_as_username)

	// HandshakeTimeout bounds the whole preamble: PROXY header (within
	// ProxyTimeout too), TLS handshake and, for ws/wss, the HTTP upgrade.
	// Default 10s.
	HandshakeTimeout time.Duration
	// ConnectTimeout is the deadline for the client's CONNECT packet once the
	// preamble is done; mochi replaces it with the keepalive deadline after
	// CONNECT (mochi itself reads CONNECT without a deadline). Default 10s.
	ConnectTimeout time.Duration

	// CloseClients, when set, disconnects the listener's clients on Close
	// instead of the CloseFn mochi passes: see ClientCloser.
	CloseClients func(id string)

	// MaxQueuedBytes bounds what waits to be written to one client beyond
	// what its socket took (send.go); over it the connection is closed as a
	// slow consumer. Default DefaultMaxQueuedBytes.
	MaxQueuedBytes int
	// SlowConsumer, when set, is told of each connection closed at
	// MaxQueuedBytes: the client's address and the bytes that would have
	// waited.
	SlowConsumer func(remote netip.AddrPort, queued int)
}

// ClientCloser disconnects the clients of one listener of s (MQTT 5:
// DISCONNECT 0x8B server shutting down). It replaces mochi v2.7.9's own,
// whose Clients.GetByListener takes the clients' read lock twice and so
// deadlocks against a client being removed at the same moment (a writer
// waiting between the two read locks): a broker stopping under client churn
// could hang for ever.
func ClientCloser(s *mqtt.Server) func(id string) {
	return func(id string) {
		for _, cl := range s.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = s.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	}
}

// listener implements mochi's listeners.Listener over the shared front
// door (internal/listener).
type listener struct {
	o    Options
	base *slog.Logger                       // without the listener attribute, which the front door adds itself
	log  *slog.Logger                       // base with listener=ID
	set  atomic.Pointer[frontdoor.Settings] // replaced by SetTLS

	mu     sync.Mutex
	ln     *frontdoor.Listener
	closed bool
	conns  map[*conn]struct{} // handed to mochi, its EstablishConnection not returned
}

var _ listeners.Listener = (*listener)(nil)

// New validates o, fills defaults and returns a listener for mochi's
// Server.AddListener. Nothing is bound until mochi calls Init. log may be nil,
// in which case the logger mochi passes to Init is used.
func New(o Options, log *slog.Logger) (listeners.Listener, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.setDefaults()
	l := &listener{o: o, base: log}
	l.set.Store(o.settings())
	return l, nil
}

// SetTLS replaces the TLS config of l, a tls or wss listener made by New,
// for the handshakes that begin from then on: the connections already made
// go on with the certificates they were given. It is how a reload gives a
// listener new certificates (or a new client CA) without closing it. It
// changes nothing else, and refuses a listener that does not do TLS and a
// config with another client auth (UsernameFromCert was checked against
// the listener's).
func SetTLS(l listeners.Listener, cfg *tls.Config) error {
	ln, ok := l.(*listener)
	switch {
	case !ok:
		return fmt.Errorf("listen: %s is not a listener of this package", l.ID())
	case ln.o.TLS == nil:
		return fmt.Errorf("listen: listener %q: type %s does not do TLS", ln.o.ID, ln.o.Type)
	case cfg == nil:
		return fmt.Errorf("listen: listener %q: no TLS config", ln.o.ID)
	case cfg.ClientAuth != ln.o.TLS.ClientAuth: // UsernameFromCert was validated against it
		return fmt.Errorf("listen: listener %q: its TLS client auth changes on restart only", ln.o.ID)
	}
	ln.mu.Lock()
	defer ln.mu.Unlock()
	s := *ln.set.Load()
	s.TLS = cfg
	ln.set.Store(&s)
	return nil
}

func (o *Options) validate() error {
	if o.ID == "" {
		return errors.New("listen: listener id is empty")
	}
	switch o.Type {
	case TypeTCP, TypeWS:
	case TypeTLS, TypeWSS:
		if o.TLS == nil {
			return fmt.Errorf("listen: listener %q: type %s needs a TLS config", o.ID, o.Type)
		}
	default:
		return fmt.Errorf("listen: listener %q: unknown type %q; want tcp, tls, ws or wss", o.ID, o.Type)
	}
	if o.ProxyProtocol && len(o.Trusted) == 0 {
		return fmt.Errorf("listen: listener %q: proxy protocol needs at least one trusted prefix", o.ID)
	}
	for _, p := range o.Trusted {
		if !p.IsValid() {
			return fmt.Errorf("listen: listener %q: invalid trusted prefix %v", o.ID, p)
		}
	}
	return o.validateCertIdentity()
}

// validateCertIdentity refuses UsernameFromCert where no verified identity
// can ever arrive, which would refuse every client.
func (o *Options) validateCertIdentity() error {
	if !o.UsernameFromCert {
		return nil
	}
	switch o.Type {
	case TypeTCP, TypeWS:
		if !o.ProxyProtocol {
			return fmt.Errorf("listen: listener %q: username_from_cert on %s needs TLS or a PROXY v2 header from a TLS-terminating load balancer", o.ID, o.Type)
		}
	default:
		verifies := o.TLS.ClientAuth == tls.VerifyClientCertIfGiven || o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		if !verifies {
			return fmt.Errorf("listen: listener %q: username_from_cert needs TLS client auth that verifies certificates (VerifyClientCertIfGiven or RequireAndVerifyClientCert)", o.ID)
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.ProxyTimeout <= 0 {
		o.ProxyTimeout = DefaultProxyTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Type == TypeTCP || o.Type == TypeWS {
		o.TLS = nil // a plain listener never does TLS, whatever was passed
	}
}

// ID returns the listener name.
func (l *listener) ID() string { return l.o.ID }

// Protocol returns the listener type: tcp, tls, ws or wss.
func (l *listener) Protocol() string { return l.o.Type }

// Address returns the bound address once Init has run, else the configured one.
func (l *listener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.o.Address
}

// Init binds the address. mochi calls it from AddListener.
func (l *listener) Init(log *slog.Logger) error {
	if l.base == nil {
		l.base = log
	}
	if l.base == nil {
		l.base = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l.log = l.base.With("listener", l.o.ID)
	ln, err := frontdoor.Listen(l.o.Address, l.o.ID, l.base) // it adds listener=ID: once per line
	if err != nil {
		return fmt.Errorf("listen: listener %q: %w", l.o.ID, err)
	}
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	return nil
}

// Serve accepts connections until Close, preparing each in its own
// goroutine and handing it to establish.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	if ln == nil {
		return
	}
	if err := ln.Serve(func(c *net.TCPConn) { l.handle(establish, ln, c) }); err != nil {
		l.log.Error("listener closed underneath; no longer accepting", "error", err)
	}
}

// Close stops accepting, closes connections still in their preamble, calls
// closeClients once for the clients mochi already holds (MQTT 5: DISCONNECT
// 0x8B) and then ends the connections mochi has not made clients of yet.
//
// It returns only once every EstablishConnection call it started has begun
// in a way mochi's Close can see: mochi's Close (Listeners.CloseAll) closes
// the listeners and then waits on a WaitGroup each EstablishConnection adds
// to, and an Add that does not happen before that Wait is a data race (and
// the client it counts may outlive Close). A connection mochi has closed
// (linger.closing) has been through that Add. The others — still reading
// their CONNECT, waiting on an auth hook, or made clients after
// closeClients looked — are closed at the socket and waited for: without
// that, mochi's Close waited for a silent one until its ConnectTimeout.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	ln := l.ln
	l.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
		ln.ClosePending()
	}
	if l.o.CloseClients != nil {
		closeClients = l.o.CloseClients
	}
	closeClients(l.o.ID)
	l.abortEstablishing()
}

// abortEstablishing closes, at the socket, each connection handed to mochi
// that mochi has not closed, and waits until mochi is done with them.
func (l *listener) abortEstablishing() {
	var wait []chan struct{}
	l.mu.Lock()
	for c := range l.conns {
		if !c.linger.closing.Load() {
			_ = c.raw.Close()
			wait = append(wait, c.done)
		}
	}
	l.mu.Unlock()
	for _, done := range wait {
		<-done
	}
}

// establish hands a prepared connection to mochi, with a deadline for the
// CONNECT packet, and closes it when mochi is done with it. Once Close has
// begun, it hands nothing more over.
func (l *listener) establish(establish listeners.EstablishFn, c *conn) {
	defer c.Close()
	if !l.track(c) {
		return
	}
	defer l.untrack(c)
	_ = c.SetDeadline(time.Now().Add(l.o.ConnectTimeout))
	if err := establish(l.o.ID, c); err != nil {
		l.log.Debug("client connection ended", "remote", c.RemoteAddr().String(), "error", err)
	}
}

// track records c as handed to mochi, or reports false once Close has begun.
func (l *listener) track(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if l.conns == nil {
		l.conns = map[*conn]struct{}{}
	}
	l.conns[c] = struct{}{}
	return true
}

// untrack records that mochi is done with c.
func (l *listener) untrack(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	close(c.done)
}
