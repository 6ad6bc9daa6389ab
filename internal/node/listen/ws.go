package listen

import (
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqlb/mqlb/internal/wsconn"
)

// wsServer serves the HTTP upgrade for ws/wss listeners. The listener's own
// accept loop does the PROXY header and TLS handshake; prepared connections
// reach the http.Server through an in-memory net.Listener (queue), so the
// upgrade request sees the real client address and the identity survives.
type wsServer struct {
	l         *listener
	queue     chan net.Conn
	srv       *http.Server
	upgrader  websocket.Upgrader
	establish listeners.EstablishFn
}

func newWSServer(l *listener) *wsServer {
	s := &wsServer{
		l:     l,
		queue: make(chan net.Conn),
		upgrader: websocket.Upgrader{
			Subprotocols:     wsconn.Subprotocols,
			HandshakeTimeout: l.o.HandshakeTimeout,
			// MQTT clients authenticate in CONNECT, not with cookies, so a
			// browser's Origin carries no authority here.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		ReadHeaderTimeout: l.o.HandshakeTimeout,
		IdleTimeout:       l.o.HandshakeTimeout, // a connection that never upgrades
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
	return s
}

// serve runs the HTTP server until the listener closes.
func (s *wsServer) serve(establish listeners.EstablishFn) {
	s.establish = establish
	ln := &queueListener{conns: s.queue, done: s.l.done, addr: s.l.ln.Addr()}
	err := s.srv.Serve(ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.l.log.Error("websocket server stopped", "error", err)
	}
}

// enqueue passes a prepared connection to the HTTP server.
func (s *wsServer) enqueue(c *conn) {
	select {
	case s.queue <- c:
	case <-s.l.done:
		_ = c.Close()
	}
}

// close stops the HTTP server; upgraded (hijacked) connections belong to
// mochi and are closed by its closeClients.
func (s *wsServer) close() { _ = s.srv.Close() }

// handle upgrades a request on the listener's path and runs the MQTT session.
func (s *wsServer) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.l.o.Path {
		http.NotFound(w, r)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.l.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return // the upgrader has answered with an HTTP error
	}
	under := ws.UnderlyingConn()
	wc := &wsConn{Conn: wsconn.New(ws)}
	if ic, ok := under.(identified); ok {
		wc.id = ic.identity()
	}
	s.l.establish(s.establish, wc)
}

// queueListener is a net.Listener fed by the listener's accept loop.
type queueListener struct {
	conns <-chan net.Conn
	done  <-chan struct{}
	addr  net.Addr
}

func (q *queueListener) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *queueListener) Close() error   { return nil } // the listener's done channel ends Accept
func (q *queueListener) Addr() net.Addr { return q.addr }

// wsConn is a WebSocket connection as a net.Conn, with the identity of
// the prepared connection underneath.
type wsConn struct {
	*wsconn.Conn
	id identity
}

func (c *wsConn) identity() identity { return c.id }
