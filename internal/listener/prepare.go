package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/mqlb/mqlb/internal/proxyhdr"
	"github.com/mqlb/mqlb/internal/relay"
	"github.com/mqlb/mqlb/internal/wsconn"
)

// Client is a prepared client connection: PROXY header read (when the peer is
// trusted) and TLS handshake done.
type Client struct {
	// Conn is what the client's stream is read from and written to: the TCP
	// connection, or the TLS connection over it. Bytes read past the PROXY
	// header come first.
	Conn net.Conn
	// Raw is the accepted socket: a *net.TCPConn, or a *relay.ClientConn
	// (ServeLoop) when the client is plain TCP.
	Raw net.Conn
	// Remote is the client's address: from the PROXY header when there was
	// one, else the socket peer.
	Remote netip.AddrPort
	// Local is the address the client connected to (from the header too).
	Local netip.AddrPort
	// Proxied is true when a PROXY header supplied Remote.
	Proxied bool
	// TLS is the handshake's state when TLS was terminated here.
	TLS *tls.ConnectionState
	// ProxySSL is what a PROXY v2 header said about the client's TLS
	// session with the proxy in front (which terminated it).
	ProxySSL proxyhdr.SSL

	pre *prefixConn // over a *net.TCPConn; nil over a *relay.ClientConn, which keeps the bytes itself
}

// Errors from Prepare, for result labels.
var (
	ErrProxyHeader = errors.New("bad or missing PROXY header from a trusted peer")
	// ErrProxyUntrusted: a PROXY header from a peer the listener does not
	// take one from (see Settings.Untrusted).
	ErrProxyUntrusted = errors.New("PROXY header from an untrusted peer")
	ErrTLS            = errors.New("TLS handshake failed")
	ErrWebSocket      = errors.New("WebSocket handshake failed")
)

// Prepare opens c (Open) and does its handshakes (Client.Handshake), all
// before deadline, which stays set: the caller keeps it for reading the
// CONNECT and clears it after.
func Prepare(c net.Conn, s *Settings, deadline time.Time) (*Client, error) {
	cl, err := Open(c, s, deadline)
	if err != nil {
		return nil, err
	}
	if err := cl.Handshake(s, deadline); err != nil {
		return nil, err
	}
	return cl, nil
}

// Open sets deadline on c and reads the PROXY header when the peer is
// trusted, so that the client's address (Remote) is known before any
// handshake: a caller counts and logs the connection by it from then on,
// as HAProxy's accept-proxy does. The deadline stays set.
//
// c is a *net.TCPConn or a *relay.ClientConn; the latter is moved to Go's
// poller for TLS or WebSocket (a reload may have given its listener either
// since it was accepted).
func Open(c net.Conn, s *Settings, deadline time.Time) (*Client, error) {
	if cc, ok := c.(*relay.ClientConn); ok && (s.TLS != nil || s.WSPath != "") {
		tcp, err := cc.TCPConn() // Close of cc closes it too
		if err != nil {
			return nil, err
		}
		c = tcp
	}
	cl := &Client{Raw: c, Conn: c}
	if tcp, ok := c.(*net.TCPConn); ok {
		cl.pre = &prefixConn{Socket: relay.Socket{TCPConn: tcp}}
		cl.Conn = cl.pre
	}
	cl.Remote, cl.Local = RemoteAddrPort(c), LocalAddrPort(c)
	if err := c.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if s.Trusts(cl.Remote.Addr()) {
		if err := cl.readProxy(s.ProxyTimeout, deadline); err != nil {
			return nil, err
		}
	} else if s.TLS != nil || s.WSPath != "" {
		if err := cl.sniff(s); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// sniff reads the first bytes an untrusted peer sends a TLS or WebSocket
// listener, kept for the handshake, and refuses a PROXY header there
// (ErrProxyUntrusted), which the handshake would call garbage. On a plain
// listener the CONNECT reader's bytes tell (the caller asks Untrusted).
func (cl *Client) sniff(s *Settings) error {
	b := make([]byte, 16)
	n, err := cl.pre.TCPConn.Read(b)
	if n == 0 {
		stage := ErrWebSocket
		if s.TLS != nil {
			stage = ErrTLS
		}
		return fmt.Errorf("%w: %w", stage, err) // what the handshake would have said
	}
	if err := s.Untrusted(cl.Remote.Addr(), b[:n]); err != nil {
		return err
	}
	cl.pre.buf = b[:n]
	return nil
}

// Untrusted returns ErrProxyUntrusted, saying why, when first (a
// connection's first bytes, from peer) begin like a PROXY header and the
// listener does not take one from peer: an operator who left the front
// load balancer out of proxy_protocol.trusted is told so. Else nil.
func (s *Settings) Untrusted(peer netip.Addr, first []byte) error {
	if !proxyhdr.LooksLike(first) {
		return nil
	}
	if s.Trusted == nil {
		return fmt.Errorf("%w %s: the listener takes no PROXY headers (proxy_protocol)", ErrProxyUntrusted, peer)
	}
	return fmt.Errorf("%w %s: not in proxy_protocol.trusted", ErrProxyUntrusted, peer)
}

// Handshake does the TLS handshake and the WebSocket upgrade when the
// listener has them, before deadline, on a client Open returned.
func (cl *Client) Handshake(s *Settings, deadline time.Time) error {
	if s.TLS != nil {
		tc := tls.Server(cl.pre, s.TLS)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("%w: %w", ErrTLS, err)
		}
		st := tc.ConnectionState()
		cl.TLS, cl.Conn = &st, tc
	}
	if s.WSPath != "" {
		under := cl.Conn
		if s.OwnWrites {
			under = noWritev{under}
		}
		wc, err := wsconn.Upgrade(under, s.WSPath)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrWebSocket, err)
		}
		// The WebSocket library clears the socket's deadline after the
		// upgrade: set it again, so it covers the whole CONNECT.
		if err := cl.Raw.SetDeadline(deadline); err != nil {
			return err
		}
		cl.Conn = wc
	}
	return nil
}

// Plain reports whether the client's stream is the TCP socket itself (no
// TLS, no WebSocket), so bytes can be spliced straight from it.
func (cl *Client) Plain() bool {
	return cl.Conn == cl.Raw || cl.pre != nil && cl.Conn == net.Conn(cl.pre)
}

func (cl *Client) readProxy(timeout time.Duration, deadline time.Time) error {
	if d := time.Now().Add(timeout); d.Before(deadline) {
		cl.Raw.SetReadDeadline(d)
		defer cl.Raw.SetReadDeadline(deadline)
	}
	h, rest, err := proxyhdr.Read(cl.Raw, make([]byte, 0, 256))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProxyHeader, err)
	}
	if cl.pre != nil {
		cl.pre.buf = rest
	} else if cc, ok := cl.Raw.(*relay.ClientConn); ok {
		cc.Unread(rest)
	}
	if !h.Local {
		cl.Remote, cl.Local, cl.Proxied = unmap(h.Source), unmap(h.Dest), true
		cl.ProxySSL = h.SSL
		if cl.pre != nil {
			cl.pre.remote = net.TCPAddrFromAddrPort(cl.Remote)
		}
	}
	return nil
}

// TakePending returns, once, the bytes read from the socket but not yet
// consumed through Conn (possible only after a PROXY header on a plain
// connection); the caller forwards them.
func (cl *Client) TakePending() []byte {
	if cl.pre == nil {
		if cc, ok := cl.Raw.(*relay.ClientConn); ok {
			return cc.TakeUnread()
		}
		return nil
	}
	b := cl.pre.buf
	cl.pre.buf = nil
	return b
}

// CertCN returns the verified client certificate's subject CN, if any.
func (cl *Client) CertCN() string {
	if cl.TLS == nil || len(cl.TLS.VerifiedChains) == 0 {
		return ""
	}
	return cl.TLS.VerifiedChains[0][0].Subject.CommonName
}

// Trusts reports whether a peer at a must send a PROXY header (and is
// believed).
func (s *Settings) Trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// RemoteAddrPort returns c's peer address, unmapped, without RemoteAddr's
// allocation for a *relay.ClientConn.
func RemoteAddrPort(c net.Conn) netip.AddrPort {
	if cc, ok := c.(*relay.ClientConn); ok {
		return unmap(cc.RemoteAddrPort())
	}
	return AddrPort(c.RemoteAddr())
}

// LocalAddrPort is RemoteAddrPort for the local address.
func LocalAddrPort(c net.Conn) netip.AddrPort {
	if cc, ok := c.(*relay.ClientConn); ok {
		return unmap(cc.LocalAddrPort())
	}
	return AddrPort(c.LocalAddr())
}

// AddrPort returns a TCP address as a netip.AddrPort, IPv4-mapped
// addresses unmapped.
func AddrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return unmap(t.AddrPort())
	}
	return netip.AddrPort{}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// prefixConn reads buf before the socket: the bytes that arrived with the
// PROXY header belong to the stream after it. Its RemoteAddr is the client
// the header named, if any. It is a relay.Socket, so that a TLS client over
// it is relayed with no goroutine while it is idle.
type prefixConn struct {
	relay.Socket
	buf    []byte
	remote net.Addr
	out    Out // see Client.SetOut
}

func (c *prefixConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.TCPConn.RemoteAddr()
}

// Out takes the writing end of a prepared client's socket over (see
// Client.SetOut): what TLS, WebSocket or the caller write to the client's
// stream reaches the socket through it.
type Out interface {
	io.Writer
	// CloseWrite shuts the socket's write side down after what was written.
	CloseWrite() error
	// Close closes the socket, after what was written if that can leave
	// soon.
	Close() error
}

// SetOut makes o take every write to the client's socket from now on, under
// TLS and WebSocket: cl.Conn's writes, CloseWrite and Close reach o, and
// write deadlines set through cl.Conn are dropped (o has its own; read
// deadlines still apply). The socket's write deadline is cleared. It is
// called once, after Prepare and before cl.Conn is used by anyone else, with
// Settings.OwnWrites set (see there); it reports false, doing nothing, for a
// client over a *relay.ClientConn.
func (cl *Client) SetOut(o Out) bool {
	if cl.pre == nil {
		return false
	}
	_ = cl.pre.TCPConn.SetWriteDeadline(time.Time{})
	cl.pre.out = o
	return true
}

func (c *prefixConn) Write(p []byte) (int, error) {
	if c.out != nil {
		return c.out.Write(p)
	}
	return c.TCPConn.Write(p)
}

// ReadFrom keeps io.Copy to the connection (the socket's splice) from
// going around the Out.
func (c *prefixConn) ReadFrom(r io.Reader) (int64, error) {
	if c.out != nil {
		return io.Copy(struct{ io.Writer }{c.out}, r)
	}
	return c.TCPConn.ReadFrom(r)
}

func (c *prefixConn) CloseWrite() error {
	if c.out != nil {
		return c.out.CloseWrite()
	}
	return c.TCPConn.CloseWrite()
}

func (c *prefixConn) Close() error {
	if c.out != nil {
		return c.out.Close()
	}
	return c.TCPConn.Close()
}

func (c *prefixConn) SetDeadline(t time.Time) error {
	if c.out != nil {
		return c.TCPConn.SetReadDeadline(t)
	}
	return c.TCPConn.SetDeadline(t)
}

func (c *prefixConn) SetWriteDeadline(t time.Time) error {
	if c.out != nil {
		return nil
	}
	return c.TCPConn.SetWriteDeadline(t)
}

// noWritev is a connection without the socket's writev (net.Buffers.WriteTo
// finds it on a type embedding a *net.TCPConn, as prefixConn does).
type noWritev struct{ net.Conn }

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Socket.Read(p)
}
