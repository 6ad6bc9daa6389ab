// Package relay moves bytes between a client connection and a server
// connection until both directions have ended, propagating half-close and
// counting bytes per direction.
//
// Plain TCP to plain TCP is served by a few event loops (one per CPU) that
// own the sockets: small reads are copied through the loop's buffer, large
// transfers go through the kernel's splice(2) path with no userspace copy;
// no goroutine per connection, and no pipe or buffer while a connection is
// idle. A TLS-terminated client over a Socket, to a TCP server, is watched
// by the same loops: when a side has bytes, a goroutine for that direction
// copies them through a pooled buffer (crypto/tls decrypting or encrypting)
// while they keep coming, and once its source has been silent for a moment
// and would block, leaves the socket to the loop and exits; no goroutine or
// buffer while the connection is idle. Other pairs (WebSocket, or TLS over
// another connection) copy through pooled buffers in two goroutines.
package relay

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts bytes as they move. In is client→server, Out is server→client.
// Both may be read while the relay runs.
type Stats struct {
	In  atomic.Int64
	Out atomic.Int64
}

// Options tune a relay.
type Options struct {
	// FinTimeout bounds how long one direction may stay open once the other
	// has finished (HAProxy's "timeout client-fin"/"server-fin"). 0 = no bound.
	FinTimeout time.Duration
}

// Result says how a relay ended: by the direction that ended first.
type Result struct {
	// Reason is client_closed, server_closed, client_error, server_error,
	// client_fin_timeout, server_fin_timeout or closed (stopped by Close).
	Reason string
	Err    error // the error that ended it, if any
}

// Done is told, once, how a relay ended, from a goroutine of the relay's.
// The load balancer's connection record is its own Done: a relay keeps no
// closure per connection.
type Done interface{ RelayDone(Result) }

// DoneFunc is a function as a Done.
type DoneFunc func(Result)

// RelayDone calls f.
func (f DoneFunc) RelayDone(r Result) { f(r) }

// Relay is a running relay. It is part of the relay's own state (an event
// loop's pair), not an allocation of its own.
type Relay struct{ s stopper }

// stopper is how each kind of relay is stopped.
type stopper interface{ stop() }

// Close ends the relay: both connections are closed and done is called.
// It may be called more than once and after the relay ended.
func (r *Relay) Close() { r.s.stop() }

// Start relays between client and server in the background and tells done
// exactly once, from another goroutine, when both directions have ended or
// Close was called. The relay owns both connections from now on (a TCP
// pair's net.TCPConns are closed at once and their sockets carried on
// duplicated descriptors); they are closed before done is told.
//
// A ClientConn and the server it dialled (ClientConn.Dial) are relayed by
// the pair that takes their slot. A server dialled with Dial is relayed on
// its own loop with a plain TCP client (the pair takes the slot its socket
// is registered in), or else moved to Go's poller for the goroutine relay;
// so is a ClientConn with any other server.
func Start(client, server net.Conn, st *Stats, opt Options, done Done) *Relay {
	if cc, ok := client.(*ClientConn); ok {
		if sc, ok := server.(*ServerConn); ok && sc.owner == cc {
			return startHandover(cc, sc, st, opt, done)
		}
		tcp, err := cc.TCPConn()
		if err != nil {
			return notStarted(done, Result{Reason: "client_error", Err: err}, server, cc)
		}
		client = tcp
	}
	if sc, ok := server.(*ServerConn); ok {
		if c, ok := client.(*net.TCPConn); ok && sc.owner == nil {
			if r := startAdopted(c, sc, st, opt, done); r != nil {
				return r
			}
		}
		tcp, err := sc.toTCPConn()
		if err != nil {
			return notStarted(done, Result{Reason: "server_error", Err: err}, sc, client)
		}
		server = tcp
	}
	s, sok := server.(*net.TCPConn)
	if c, ok := client.(*net.TCPConn); ok && sok {
		if r := startSplice(c, s, st, opt, done); r != nil {
			return r
		}
	}
	if tc, ok := client.(*tls.Conn); ok && sok {
		if sk, ok := tc.NetConn().(interface{ socket() *Socket }); ok {
			if r := startTLS(tc, sk.socket(), s, st, opt, done); r != nil {
				return r
			}
		}
	}
	return startGoroutines(client, server, st, opt, done)
}

// ended is a relay that could not start: it was told done already.
type ended struct{}

func (ended) stop() {}

// notStarted closes conns and tells done r, for a relay that could not
// start.
func notStarted(done Done, r Result, conns ...net.Conn) *Relay {
	for _, c := range conns {
		c.Close()
	}
	go done.RelayDone(r)
	return &Relay{s: ended{}}
}

// end is how one direction ended: err == nil is a clean EOF from its source.
type end struct {
	err error
	at  time.Time
}

func (e end) result(side string) Result {
	switch {
	case e.err == nil:
		return Result{Reason: side + "_closed"}
	case errors.Is(e.err, net.ErrClosed):
		return Result{Reason: ReasonClosed, Err: e.err}
	case errors.Is(e.err, errFinTimeout), errors.Is(e.err, os.ErrDeadlineExceeded):
		return Result{Reason: side + "_fin_timeout", Err: e.err}
	default:
		return Result{Reason: side + "_error", Err: e.err}
	}
}

var errFinTimeout = errors.New("fin timeout")

// ReasonClosed is the Result of a relay the load balancer ended (Close):
// at shutdown, or for a reason the caller logs instead (proxy.CloseFor).
const ReasonClosed = "closed"

// firstResult names the direction that ended first (up is client→server).
func firstResult(up, down end) Result {
	if up.at.Before(down.at) {
		return up.result("client")
	}
	return down.result("server")
}

// goRelay is a relay served by goroutines.
type goRelay struct {
	Relay
	once           sync.Once
	client, server net.Conn
}

func (g *goRelay) stop() { g.once.Do(g.closeBoth) }

func (g *goRelay) closeBoth() {
	g.client.Close()
	g.server.Close()
}

// startGoroutines relays with one goroutine per direction (the goroutine
// that serves server→client also waits for the other and reports).
func startGoroutines(client, server net.Conn, st *Stats, opt Options, done Done) *Relay {
	g := &goRelay{client: client, server: server}
	g.s = g
	go func() {
		up := make(chan end, 1)
		go clientToServer(server, client, &st.In, opt.FinTimeout, up)
		down := serverToClient(client, server, &st.Out, opt.FinTimeout)
		u := <-up
		g.stop()
		done.RelayDone(firstResult(u, down))
	}()
	return &g.Relay
}

// clientToServer is the upstream copy loop (named so stack dumps read).
func clientToServer(dst, src net.Conn, n *atomic.Int64, fin time.Duration, done chan<- end) {
	done <- pump(dst, src, n, fin)
}

// serverToClient is the downstream copy loop.
func serverToClient(dst, src net.Conn, n *atomic.Int64, fin time.Duration) end {
	return pump(dst, src, n, fin)
}

// pump copies src to dst. On src's EOF it half-closes dst, so dst's peer sees
// EOF too, and bounds the other direction (which reads from dst) by fin. On an
// error it closes both connections, which ends the other direction.
func pump(dst, src net.Conn, n *atomic.Int64, fin time.Duration) end {
	err := copyBuffered(dst, src, n)
	// Dated before the closes it causes: the other direction's end, which
	// they cause, must not look earlier (a WebSocket client's close frame
	// was logged server_closed when this goroutine lost the CPU here).
	at := time.Now()
	if err != nil {
		src.Close()
		dst.Close()
		return end{err: err, at: at}
	}
	closeWrite(dst)
	if fin > 0 {
		_ = dst.SetReadDeadline(time.Now().Add(fin))
	}
	return end{at: at}
}

type closeWriter interface{ CloseWrite() error }

// closeWrite half-closes dst so its peer sees EOF. For TLS, CloseWrite sends
// close_notify; the TCP write side is then shut as well.
func closeWrite(dst net.Conn) {
	if cw, ok := dst.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	if nc, ok := dst.(interface{ NetConn() net.Conn }); ok {
		if cw, ok := nc.NetConn().(closeWriter); ok {
			_ = cw.CloseWrite()
		}
	}
}
