package listen

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	frontdoor "github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// settings are the shared front door's settings for o: the same PROXY
// reader, TLS handshake and WebSocket upgrade as the load balancer's.
func (o *Options) settings() *frontdoor.Settings {
	s := &frontdoor.Settings{Name: o.ID, TLS: o.TLS, OwnWrites: true}
	if o.ProxyProtocol {
		s.Trusted, s.ProxyTimeout = o.Trusted, o.ProxyTimeout
	}
	if o.Type == TypeWS || o.Type == TypeWSS {
		s.WSPath = o.Path
	}
	return s
}

// handle prepares one accepted connection (PROXY header, TLS, WebSocket
// upgrade, all within HandshakeTimeout) and hands it to mochi.
func (l *listener) handle(establish listeners.EstablishFn, ln *frontdoor.Listener, tcp *net.TCPConn) {
	deadline := time.Now().Add(l.o.HandshakeTimeout)
	set := l.set.Load() // one connection, one TLS config, whatever SetTLS does meanwhile
	cl, err := frontdoor.Open(tcp, set, deadline)
	if err != nil {
		tcp.Close()
		logPreambleError(l.log.With("remote", tcp.RemoteAddr().String()), err)
		return
	}
	// from the PROXY header on, the client is known by the address it names
	if err := cl.Handshake(set, deadline); err != nil {
		tcp.Close()
		logPreambleError(l.log.With("remote", cl.Remote.String()), err)
		return
	}
	ln.Settled(tcp) // mochi owns it now; Close reaches it through closeClients or abortEstablishing
	c := &conn{Conn: cl.Conn, id: l.identity(cl), raw: tcp, done: make(chan struct{})}
	if err := l.sendWithoutWaiting(cl, tcp); err != nil {
		tcp.Close()
		l.log.Info("connection refused: its socket cannot be written without waiting", "remote", cl.Remote.String(), "error", err)
		return
	}
	l.establish(establish, c)
}

// sendWithoutWaiting makes the writes to cl's stream go to its socket
// through a sender (send.go): they never wait for the client.
func (l *listener) sendWithoutWaiting(cl *frontdoor.Client, tcp *net.TCPConn) error {
	var slow func(int)
	if f := l.o.SlowConsumer; f != nil {
		remote := cl.Remote
		slow = func(queued int) { f(remote, queued) }
	}
	s, err := newSender(tcp, l.o.MaxQueuedBytes, slow)
	if err != nil {
		return err
	}
	if !cl.SetOut(s) {
		return errors.New("not over a TCP socket")
	}
	return nil
}

// identity is the verified client certificate's CN: from the node's own
// TLS handshake or, on a plain listener, from a trusted load balancer's
// PROXY v2 SSL TLV. On a TLS listener only the node's own handshake counts:
// an SSL TLV would describe a TLS session that did not end there.
func (l *listener) identity(cl *frontdoor.Client) identity {
	id := identity{fromCert: l.o.UsernameFromCert}
	switch {
	case cl.TLS != nil:
		id.cn = cl.CertCN()
		id.ok = id.cn != ""
	case cl.Proxied:
		id.cn, id.ok = cl.ProxySSL.VerifiedCN()
	}
	if id.ok && !mqttwire.ValidString(id.cn) {
		// A CN holding U+0000 cannot be an MQTT username.
		id.cn, id.ok = "", false
	}
	return id
}

// logPreambleError logs a failed preamble at a level that fits: a port probe
// (immediate EOF or reset) is debug, anything else is info.
func logPreambleError(log *slog.Logger, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		log.Debug("connection closed during preamble", "error", err)
	case errors.Is(err, frontdoor.ErrProxyHeader):
		log.Info("trusted peer sent no or a bad PROXY header", "error", err)
	default:
		log.Info("connection preamble failed", "error", err)
	}
}
