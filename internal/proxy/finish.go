package proxy

import (
	"fmt"
	"runtime/debug"
)

// finish ends a connection, exactly once, however it ended (refused,
// relayed and closed, panicked): out of the live table, the lease released
// with the byte counts, the gate left, the result counted (unless it was
// when the client got its CONNACK), one access-log record, the gauge and
// the shutdown wait. Its sockets are closed by then: by the relay, or by
// the session (session.finish).
func (p *Proxy) finish(c *Conn) {
	if c.finished.Swap(true) {
		return
	}
	c.ticket.Leave()
	if c.ID != 0 { // it was listed
		p.conns.remove(c)
	}
	r := c.record()
	c.lease.Release(r.BytesIn, r.BytesOut)
	if !c.counted {
		p.metrics.result(r.Listener, r.Result)
	} else { // relayed
		p.metrics.duration.WithLabelValues(r.Upstream).Observe(r.Duration.Seconds())
	}
	c.rt.AccessLog.Write(&r)
	p.active.Add(-1)
	p.wg.Done()
}

// finish ends a connection that the relay does not own: the sockets the
// session holds are closed, then the connection finishes.
func (s *session) finish() {
	s.conn.Close()
	if s.server != nil {
		s.server.Close()
	}
	s.p.finish(s.c)
}

// recoverPanic keeps a bug in one connection's path from taking the process
// (and every other connection) down: the panic is logged with its stack and
// the connection finishes like any other. Once the relay owns it, closing
// it makes the relay finish it.
func (s *session) recoverPanic() {
	v := recover()
	if v == nil {
		return
	}
	c := s.c
	s.p.log.Error("panic serving a connection; closed it", "remote", c.remote(), "panic", v, "stack", string(debug.Stack()))
	if s.relayed {
		c.CloseFor(ReasonPanic)
		return
	}
	c.result, c.reason = ResultError, fmt.Sprint("panic: ", v)
	s.finish()
}
