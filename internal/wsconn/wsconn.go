// Package wsconn carries MQTT's byte stream over WebSocket binary messages
// as a net.Conn ([MQTT-6.0.0-1]: MQTT packets travel in binary frames), and
// upgrades a connection whose HTTP request has been read by hand.
package wsconn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"

	"github.com/gorilla/websocket"
)

// ErrNotBinary is returned when a peer sends a non-binary WebSocket message.
var ErrNotBinary = errors.New("websocket message is not binary")

// Subprotocols are the WebSocket subprotocols MQTT clients offer: "mqtt"
// [MQTT-6.0.0-3], and "mqttv3.1", the name MQTT 3.1 clients used.
var Subprotocols = []string{"mqtt", "mqttv3.1"}

// ErrSubprotocol is returned by Upgrade when a client offers WebSocket
// subprotocols, none of them MQTT's.
var ErrSubprotocol = errors.New("websocket handshake: no MQTT subprotocol offered")

// Conn is a WebSocket connection read and written as a byte stream.
// Deadlines and addresses come from the connection underneath.
type Conn struct {
	net.Conn
	WS *websocket.Conn
	r  io.Reader  // the current message, nil between messages
	wm sync.Mutex // gorilla allows one writer at a time; net.Conn promises many
}

// New wraps an upgraded WebSocket connection.
func New(ws *websocket.Conn) *Conn { return &Conn{Conn: ws.UnderlyingConn(), WS: ws} }

// Read reads across message boundaries; a non-binary message is an error.
// The client's close frame is the end of its stream, io.EOF, as a TCP
// client's FIN is (gorilla has answered it with one of ours).
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.WS.NextReader()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return 0, io.EOF
			}
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, ErrNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 && len(p) > 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write sends p as one binary message. It is safe for concurrent use.
func (c *Conn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.WS.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the connection underneath.
func (c *Conn) Close() error { return c.WS.Close() }

// MaxRequest caps the upgrade request (request line and headers): a
// WebSocket upgrade is a few hundred bytes, a browser's with cookies a few
// KiB.
const MaxRequest = 16 << 10

// Upgrade reads one HTTP request from c and upgrades it to a WebSocket on
// path, answering an HTTP error (and returning it) otherwise. c's deadline
// bounds the handshake; the caller sets it.
func Upgrade(c net.Conn, path string) (*Conn, error) {
	capped := &cappedReader{r: c, left: MaxRequest}
	br := bufio.NewReaderSize(capped, 2048)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	capped.left = -1 // the WebSocket stream that follows is not capped here
	w := &hijacker{c: c, brw: bufio.NewReadWriter(br, bufio.NewWriterSize(c, 512)), h: http.Header{}}
	if req.URL.Path != path {
		http.Error(w, "not found", http.StatusNotFound)
		return nil, fmt.Errorf("websocket handshake: path %q, want %q", req.URL.Path, path)
	}
	// The server must select "mqtt" [MQTT-6.0.0-4]: a client asking only
	// for other subprotocols speaks something else. One that offers none
	// at all is accepted, as most brokers do.
	if offered := websocket.Subprotocols(req); len(offered) > 0 && !slices.ContainsFunc(offered, isMQTT) {
		http.Error(w, "unsupported WebSocket subprotocol; want mqtt", http.StatusBadRequest)
		return nil, fmt.Errorf("%w: %q", ErrSubprotocol, offered)
	}
	u := websocket.Upgrader{
		Subprotocols: Subprotocols,
		// MQTT clients authenticate in CONNECT, not with cookies, so a
		// browser's Origin carries no authority here.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := u.Upgrade(w, req, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	return New(ws), nil
}

func isMQTT(p string) bool { return slices.Contains(Subprotocols, p) }

// errRequestTooLarge ends an upgrade request over MaxRequest.
var errRequestTooLarge = fmt.Errorf("request over %d bytes", MaxRequest)

// cappedReader reads at most left bytes (no limit once left is negative).
type cappedReader struct {
	r    io.Reader
	left int
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return c.r.Read(p)
	}
	if c.left == 0 {
		return 0, errRequestTooLarge
	}
	n, err := c.r.Read(p[:min(len(p), c.left)])
	c.left -= n
	return n, err
}

// hijacker is the http.ResponseWriter (and Hijacker) the upgrader needs,
// over a connection whose request was read by hand.
type hijacker struct {
	c     net.Conn
	brw   *bufio.ReadWriter
	h     http.Header
	wrote bool
}

func (w *hijacker) Header() http.Header { return w.h }

func (w *hijacker) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.h.Set("Connection", "close")
	fmt.Fprintf(w.brw, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	w.h.Write(w.brw)
	w.brw.WriteString("\r\n")
}

func (w *hijacker) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	n, err := w.brw.Write(b)
	if err == nil {
		err = w.brw.Flush()
	}
	return n, err
}

func (w *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.c, w.brw, nil }
