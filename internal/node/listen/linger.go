package listen

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// A client's connection is closed gracefully: the node's last packets (a
// DISCONNECT with its reason code) are followed by a FIN, and what the
// client still sends meanwhile is read and discarded for a while before the
// socket is closed. Closing a TCP socket with unread data in it sends a
// reset instead, and a reset makes the client's stack drop what it had
// received but not yet read: a client still sending when the node
// disconnects it (one that exceeded the Receive Maximum, say) would never
// see the reason.
const (
	lingerTime  = 2 * time.Second // how long to wait for the client to close its side
	lingerBytes = 1 << 20         // how much to read from it meanwhile
)

// lingering is the graceful close of a conn.
type lingering struct {
	once    sync.Once
	closing atomic.Bool
	err     error
}

// Read returns what the client sent until the connection is being closed;
// from then on, EOF (mochi processes nothing sent after its DISCONNECT).
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.linger.closing.Load() {
		return 0, io.EOF
	}
	return n, err
}

// SetDeadline and SetReadDeadline leave the closing drain's deadline alone.
// SetDeadline passes a deadline on coarsely (see deadlineSlack).
func (c *conn) SetDeadline(t time.Time) error {
	if c.linger.closing.Load() {
		return nil
	}
	switch {
	case t.IsZero() || c.deadline.IsZero():
		// passed on as asked: no deadline, or the first (the CONNECT's)
	case t.After(c.deadline):
		t = t.Add(deadlineSlack) // moved later: asks within the next second need no move
	case c.deadline.Sub(t) <= deadlineSlack:
		return nil // the deadline in place is no earlier than t, and at most deadlineSlack later
	}
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	if c.linger.closing.Load() {
		return nil
	}
	c.deadline = time.Time{} // the next SetDeadline is passed on
	return c.Conn.SetReadDeadline(t)
}

// deadlineSlack: mochi sets a client connection's deadline (1.5 × the
// keep-alive from now [MQTT-3.1.2-22]) before every packet it reads, and
// each time the runtime moves two timers, the read and the write one (2.3 %
// of a node's CPU at QoS 1 in a profile). A deadline is passed on only when
// the one in place is earlier than asked (then deadlineSlack beyond what was
// asked), or more than deadlineSlack later, or none was set: never earlier
// than asked, at most deadlineSlack later, and moved about once per
// deadlineSlack on a busy connection instead of once per packet. Only the
// goroutine reading the connection (listener.establish, then mochi's read
// loop) calls these.
const deadlineSlack = time.Second

// Close shuts the write side down (after what has been written) and closes
// the connection once the client has closed its side, or after lingerTime.
func (c *conn) Close() error {
	c.linger.once.Do(func() {
		c.flushBeforeClose()
		c.linger.closing.Store(true)
		cw, ok := c.Conn.(interface{ CloseWrite() error })
		if !ok || cw.CloseWrite() != nil {
			c.linger.err = c.Conn.Close()
			return
		}
		_ = c.Conn.SetDeadline(time.Now().Add(lingerTime))
		go func() {
			_, _ = io.CopyN(io.Discard, c.Conn, lingerBytes)
			_ = c.Conn.Close()
		}()
	})
	return c.linger.err
}
