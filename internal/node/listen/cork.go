package listen

import (
	"net"
	"sync"
)

// Corking a client's connection gathers what is written to it and writes
// it in one go: the node hands several of a client's stored publishes back
// to mochi at once, and reads several queued messages for it at once
// (sessions.durability replicated); mochi writes each PUBACK or PUBLISH
// with a write system call of its own, which cost more than the rest of
// handing a publish back. A corked connection buffers every write until
// the last Uncork; whoever corks uncorks before it waits for anything (the
// client's acknowledgement above all: what it waits for may be in the
// buffer, written by another goroutine), so the buffered bytes leave
// within one run of work.

// corking is a conn's gathered writes.
type corking struct {
	mu    sync.Mutex
	depth int    // corks open
	buf   []byte // written while corked
	err   error  // the first write error since the buffer was in use
}

var corkBufs = sync.Pool{New: func() any { return new([]byte) }}

// Write writes p, or buffers it while the connection is corked.
func (c *conn) Write(p []byte) (int, error) {
	c.cork.mu.Lock()
	defer c.cork.mu.Unlock()
	if c.cork.depth == 0 {
		return c.Conn.Write(p)
	}
	if c.cork.err != nil {
		return 0, c.cork.err
	}
	if c.cork.buf == nil {
		c.cork.buf = (*corkBufs.Get().(*[]byte))[:0]
	}
	c.cork.buf = append(c.cork.buf, p...)
	return len(p), nil
}

// flushLocked writes what was gathered (c.cork.mu held); the buffer goes
// back to the pool once nobody corks.
func (c *conn) flushLocked() error {
	if len(c.cork.buf) > 0 && c.cork.err == nil {
		_, c.cork.err = c.Conn.Write(c.cork.buf)
	}
	c.cork.buf = c.cork.buf[:0]
	if c.cork.depth == 0 && c.cork.buf != nil {
		if cap(c.cork.buf) <= 64<<10 {
			b := c.cork.buf
			corkBufs.Put(&b)
		}
		c.cork.buf, c.cork.err = nil, nil
	}
	return c.cork.err
}

// Corked is a cork on a client connection (see Cork).
type Corked struct {
	c    *conn
	open bool
}

// Cork starts gathering the writes to nc, a connection this package handed
// to mochi (looking through wrappers with NetConn); on any other
// connection the cork does nothing. Every Cork needs its Uncork.
func Cork(nc net.Conn) *Corked {
	for range 8 {
		if c, ok := nc.(*conn); ok {
			c.cork.mu.Lock()
			c.cork.depth++
			c.cork.mu.Unlock()
			return &Corked{c: c, open: true}
		}
		w, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = w.NetConn()
	}
	return &Corked{}
}

// Uncork writes what was gathered and ends this cork; once ended, it does
// nothing.
func (k *Corked) Uncork() {
	if k.c == nil || !k.open {
		return
	}
	k.open = false
	k.c.cork.mu.Lock()
	defer k.c.cork.mu.Unlock()
	k.c.cork.depth--
	_ = k.c.flushLocked() // an error is returned to the next write
}

// flushBeforeClose writes what is gathered before the connection closes
// (mochi's last packet, a DISCONNECT, may be in it).
func (c *conn) flushBeforeClose() {
	c.cork.mu.Lock()
	defer c.cork.mu.Unlock()
	depth := c.cork.depth
	c.cork.depth = 0
	_ = c.flushLocked()
	c.cork.depth = depth
}
