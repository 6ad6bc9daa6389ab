// Package relay moves bytes between a client connection and a server
// connection until both directions have ended, propagating half-close and
// counting bytes per direction.
//
// Plain TCP to plain TCP goes through the kernel's splice(2) path with no
// userspace copy. Unlike io.Copy's splice (which keeps a pipe while it waits
// for data), a pipe is taken from a pool only while bytes are moving, so an
// idle relayed connection costs two parked goroutines and nothing else. Other
// pairs (TLS) copy through pooled buffers, taken only once data is there when
// the source is a TCP socket.
package relay

import (
	"errors"
	"net"
	"os"
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
	// client_fin_timeout, server_fin_timeout or closed (stopped from outside).
	Reason string
	Err    error // the error that ended it, if any
}

// Pipe relays between client and server until both directions end or one
// fails, then closes both. It blocks; closing either connection from another
// goroutine stops it.
func Pipe(client, server net.Conn, st *Stats, opt Options) Result {
	up := make(chan end, 1)
	go clientToServer(server, client, &st.In, opt.FinTimeout, up)
	down := serverToClient(client, server, &st.Out, opt.FinTimeout)
	u := <-up
	client.Close()
	server.Close()
	if u.at.Before(down.at) {
		return u.result("client")
	}
	return down.result("server")
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
		return Result{Reason: "closed", Err: e.err}
	case errors.Is(e.err, os.ErrDeadlineExceeded):
		return Result{Reason: side + "_fin_timeout", Err: e.err}
	default:
		return Result{Reason: side + "_error", Err: e.err}
	}
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
	err := copyConn(dst, src, n)
	if err != nil {
		src.Close()
		dst.Close()
		return end{err: err, at: time.Now()}
	}
	closeWrite(dst)
	if fin > 0 {
		_ = dst.SetReadDeadline(time.Now().Add(fin))
	}
	return end{at: time.Now()}
}

// copyConn copies src to dst until src's EOF (nil) or an error.
func copyConn(dst, src net.Conn, n *atomic.Int64) error {
	d, dok := dst.(*net.TCPConn)
	s, sok := src.(*net.TCPConn)
	if dok && sok {
		return spliceConn(d, s, n)
	}
	return copyBuffered(dst, src, n)
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
