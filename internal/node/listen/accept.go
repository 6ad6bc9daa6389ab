package listen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// Backoff bounds for retried accept errors.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// acceptLoop accepts until the listener is closed. Any accept error other than
// the listener being closed (EMFILE, ECONNABORTED, …) is logged and retried
// with exponential backoff instead of ending the loop silently.
func (l *listener) acceptLoop(handoff func(*conn)) {
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err == nil {
			delay = 0
			go l.prepare(raw, handoff)
			continue
		}
		if l.isClosed() {
			return
		}
		if errors.Is(err, net.ErrClosed) {
			l.log.Error("listener closed underneath; no longer accepting", "error", err)
			return
		}
		delay = nextBackoff(delay)
		l.log.Warn("accept failed; retrying", "error", err, "retry_in", delay)
		if !l.wait(delay) {
			return
		}
	}
}

// wait sleeps for d unless the listener closes first; it reports whether to go on.
func (l *listener) wait(d time.Duration) bool {
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

// prepare runs the connection's preamble (PROXY header, TLS handshake) in the
// connection's own goroutine and hands the result on.
func (l *listener) prepare(raw net.Conn, handoff func(*conn)) {
	if !l.track(raw) {
		_ = raw.Close()
		return
	}
	c, err := l.preamble(raw)
	l.untrack(raw)
	if err != nil {
		logPreambleError(l.log.With("remote", raw.RemoteAddr().String()), err)
		_ = raw.Close()
		return
	}
	handoff(c)
}

// track records a connection in its preamble so Close can interrupt it; it
// reports false when the listener is already closed.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

// preamble reads the PROXY header first (when enabled), then runs the TLS
// handshake (tls, wss), and records the certificate identity. On a TLS
// listener only the node's own handshake counts: an SSL TLV from the load
// balancer would describe a TLS session that did not end there.
func (l *listener) preamble(raw net.Conn) (*conn, error) {
	c := &conn{Conn: raw, id: identity{fromCert: l.o.UsernameFromCert}}
	if l.o.ProxyProtocol {
		pc, err := l.readProxyHeader(raw)
		if err != nil {
			return nil, err
		}
		c.Conn = pc
		if l.o.TLS == nil {
			c.id.cn, c.id.ok = proxyIdentity(pc.ProxyHeader())
		}
	}
	if l.o.TLS != nil {
		tc, err := l.handshake(c.Conn)
		if err != nil {
			return nil, err
		}
		c.Conn = tc
		c.id.cn, c.id.ok = tlsIdentity(tc)
	}
	return c, nil
}

// readProxyHeader applies the listener's policy: a trusted peer MUST send a
// header (REQUIRE); anyone else may connect without one but is refused if it
// sends one (REJECT). The header is read now, under ProxyTimeout.
func (l *listener) readProxyHeader(raw net.Conn) (*proxyproto.Conn, error) {
	policy := proxyproto.REJECT
	if l.trusted(raw.RemoteAddr()) {
		policy = proxyproto.REQUIRE
	}
	pc := proxyproto.NewConn(raw,
		proxyproto.WithPolicy(policy),
		proxyproto.SetReadHeaderTimeout(l.o.ProxyTimeout))
	// A zero-length read makes go-proxyproto process the header here, under
	// its read deadline (restored to none afterwards), and surfaces its error;
	// no payload byte is consumed.
	if _, err := pc.Read(nil); err != nil {
		return nil, fmt.Errorf("proxy header: %w", err)
	}
	return pc, nil
}

func (l *listener) trusted(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.o.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// handshake runs the TLS server handshake under HandshakeTimeout and clears
// the deadline afterwards.
func (l *listener) handshake(c net.Conn) (*tls.Conn, error) {
	tc := tls.Server(c, l.o.TLS)
	_ = c.SetDeadline(time.Now().Add(l.o.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return tc, nil
}

// logPreambleError logs a failed preamble at a level that fits: a port probe
// (immediate EOF or reset) is debug, a PROXY header from an untrusted peer is
// a warning, anything else is info.
func logPreambleError(log *slog.Logger, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		log.Debug("connection closed during preamble", "error", err)
	case errors.Is(err, proxyproto.ErrSuperfluousProxyHeader):
		log.Warn("refused PROXY header from an untrusted peer")
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		log.Info("trusted peer sent no PROXY header in time", "error", err)
	default:
		log.Info("connection preamble failed", "error", err)
	}
}
